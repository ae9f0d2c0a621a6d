"""``longssm demo``'s step probe trains outside the run folder, so two demos at once cannot
delete each other's probe mid-run (the run folder itself is guarded by the run lock)."""

from pathlib import Path

import pytest

import longssm.training.loop as loop
from longssm.cli.demo import demo


class Stop(Exception):
    pass


def test_the_probe_trains_in_a_private_folder_that_is_removed(tmp_path, monkeypatch):
    seen = []

    def fake_train(cfg, **kw):
        seen.append((Path(cfg.train.out_dir), kw))
        if len(seen) == 2:  # the main run: stop here, the probe is what is checked
            raise Stop
        assert Path(cfg.train.out_dir).is_dir()

    monkeypatch.setattr(loop, "train", fake_train)
    out = tmp_path / "demo"
    with pytest.raises(Stop):
        demo(str(out), 1.0, [])
    (probe, probe_kw), (main, main_kw) = seen
    assert main == out and main_kw.get("overwrite") is True
    assert out not in probe.parents and probe != out
    assert not probe.exists() and "overwrite" not in probe_kw  # a fresh folder of its own, removed after
