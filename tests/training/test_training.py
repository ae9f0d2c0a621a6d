"""Training: exact resume, carried states, NaN handling, checkpoints, config errors."""

import json

import pytest

from longssm.models import checkpoint as ckpt
from longssm.training.config import resolve
from longssm.training.loop import NaNLossError, train
from conftest import corpus

def config(tmp_path, out, **train):
    d = corpus(tmp_path)
    return resolve({
        "model": {"n_layer": 2, "d_model": 16, "mixers": ["h3", "mamba"],
                  "mixer_options": {"h3": {"d_state": 8, "shift_state": 4}, "mamba": {"d_state": 4}}},
        "data": {"train": [str(d / "doc*.txt")], "valid": [str(d / "valid.txt")]},
        "train": {"steps": 6, "batch_size": 4, "seq_len": 16, "warmup_steps": 2, "eval_every": 0,
                  "eval_batches": 1, "checkpoint_every": 3, "log_every": 1, "out_dir": str(out), **train},
    })


def losses(out):
    return [r["loss"] for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if "loss" in r]


@pytest.mark.slow
@pytest.mark.parametrize("state_init", ["zero", "previous", "noise"])
def test_resume_is_exact(tmp_path, state_init):
    straight = tmp_path / "straight"
    train(config(tmp_path, straight, state_init=state_init, accumulate=2), progress=False, log=lambda *_: None)
    split = tmp_path / "split"
    train(config(tmp_path, split, state_init=state_init, accumulate=2, steps=3), progress=False, log=lambda *_: None)
    train(config(tmp_path, split, state_init=state_init, accumulate=2), resume=True, progress=False, log=lambda *_: None)
    a, b = losses(straight), losses(split)
    assert len(a) == len(b) == 6
    assert max(abs(x - y) for x, y in zip(a, b)) <= 1e-6


def test_previous_state_changes_training(tmp_path):
    zero, prev = tmp_path / "z", tmp_path / "p"
    train(config(tmp_path, zero, steps=3), progress=False, log=lambda *_: None)
    train(config(tmp_path, prev, steps=3, state_init="previous"), progress=False, log=lambda *_: None)
    assert losses(zero)[0] != losses(prev)[0] or losses(zero)[2] != losses(prev)[2]


def test_nan_loss_stops_and_keeps_last_checkpoint(tmp_path, monkeypatch):
    out = tmp_path / "run"
    train(config(tmp_path, out, steps=3), progress=False, log=lambda *_: None)
    good = (out / "checkpoints" / "latest").read_text()
    import longssm.training.loop as loop

    real = loop.F.cross_entropy
    monkeypatch.setattr(loop.F, "cross_entropy", lambda *a, **k: real(*a, **k) * float("nan"))
    with pytest.raises(NaNLossError, match="step 3: loss is nan"):
        train(config(tmp_path, out, steps=6), resume=True, progress=False, log=lambda *_: None)
    assert (out / "checkpoints" / "latest").read_text() == good
    path = ckpt.find_checkpoint(out)
    ckpt.verify(path, ckpt.read_record(path))


def test_corrupted_checkpoint_is_named(tmp_path):
    out = tmp_path / "run"
    train(config(tmp_path, out, steps=3), progress=False, log=lambda *_: None)
    path = ckpt.find_checkpoint(out)
    weights = path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(ckpt.CheckpointError, match="model.safetensors: checksum mismatch"):
        train(config(tmp_path, out, steps=6), resume=True, progress=False, log=lambda *_: None)
    (path / "record.json").write_text("{not json")
    with pytest.raises(ckpt.CheckpointError, match="record.json: corrupted"):
        ckpt.read_record(path)
    with pytest.raises(ckpt.CheckpointError, match="no checkpoint here"):
        ckpt.find_checkpoint(tmp_path / "nowhere")


def test_checkpoints_are_pruned_and_atomic(tmp_path):
    out = tmp_path / "run"
    train(config(tmp_path, out, steps=6, checkpoint_every=1, keep_checkpoints=2), progress=False, log=lambda *_: None)
    names = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert names == ["latest", "step_0000005", "step_0000006"]


def test_config_errors_name_the_key(tmp_path):
    with pytest.raises(ValueError, match="unknown key\\(s\\) train.stpes"):
        resolve({"train": {"stpes": 3}})
    with pytest.raises(TypeError, match="train.lr must be a number, got str"):
        resolve({"train": {"lr": "fast"}})
    with pytest.raises(ValueError, match="state_init must be one of"):
        resolve({"train": {"state_init": "random"}})
    with pytest.raises(ValueError, match="unknown section"):
        resolve({"optim": {}})
    with pytest.raises(ValueError, match="unknown preset"):
        resolve({"model": {"preset": "h5"}})
    with pytest.raises(ValueError, match="tokens_per_step"):
        resolve({"train": {"tokens_per_step": 100, "seq_len": 16}})
    assert resolve({"train": {"tokens_per_step": 128, "seq_len": 16}}).train.global_batch == 8
