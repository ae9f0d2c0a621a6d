"""Checkpoints written before the core seam (release dc0bffe) still load and resume exactly.

``tests/fixtures/legacy_run`` was written by that release (``tests/fixtures/make_legacy_checkpoint.py``):
a 4-layer h3 / attention / mamba / s4d model after 2 steps of previous-initialised training,
whose weights use the old parameter names and whose carried states are pickled state classes
(one of which, ``ModelState``, has moved). ``expected.json`` holds that release's loss and gradient
norm at step 3, resumed from the same checkpoint.
"""

import json
import shutil
import sys
from pathlib import Path

import pytest

from longssm.models import checkpoint as ckpt
from longssm.models import load_model
from longssm.training.loop import train

FIXTURE = Path(__file__).parents[1] / "fixtures"
sys.path.insert(0, str(FIXTURE))
from make_legacy_checkpoint import TEXT, config  # noqa: E402  (the fixture's own run config)


@pytest.fixture
def legacy_run(tmp_path):
    run = tmp_path / "run"
    shutil.copytree(FIXTURE / "legacy_run" / "checkpoints", run / "checkpoints")
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(TEXT)
    return run, corpus


def test_legacy_checkpoint_resumes_to_the_same_loss(legacy_run):
    run, corpus = legacy_run
    expected = json.loads((FIXTURE / "legacy_run" / "expected.json").read_text())
    metrics = train(config(run, corpus, 3), resume=True, progress=False, log=lambda *_: None)
    assert metrics["step"] == expected["step"]
    assert metrics["loss"] == pytest.approx(expected["loss"], rel=1e-6, abs=0)
    assert metrics["grad_norm"] == pytest.approx(expected["grad_norm"], rel=1e-5, abs=0)


def test_legacy_checkpoint_loads_for_inference_and_new_ones_hold_only_tensors(legacy_run):
    run, corpus = legacy_run
    model, _, record, _ = load_model(run)
    assert record["step"] == 2 and model.backbone.blocks[2].mixer.core.A_log.shape == (32, 4)
    train(config(run, corpus, 4), resume=True, progress=False, log=lambda *_: None)
    extra = ckpt.load_extra(ckpt.find_checkpoint(run), "state.pt")  # weights_only: no pickled classes
    fields = extra[0]["states"][0]
    assert isinstance(fields, dict) and "layers.1" not in str(sorted(fields))  # attention: not carried
    assert {"layers.0.shift", "layers.0.ssm", "layers.2.conv", "layers.2.ssm", "layers.3.ssm"} == set(fields)
