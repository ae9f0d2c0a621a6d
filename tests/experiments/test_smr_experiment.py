"""The SMR experiment: a tiny grid over every task runs, resumes without retraining, refuses bad
configs and files, and reports every sampling point."""

import json

import pytest

from longssm.cli.main import main
from longssm.experiments.smr import SMRExperimentConfig
from longssm.experiments.smr_grid import run_grid
from longssm.experiments.smr_report import findings, report


@pytest.fixture
def tiny(tmp_path):
    (tmp_path / "train.txt").write_text("the quick brown fox jumps over the lazy dog. " * 40)
    (tmp_path / "valid.txt").write_text("a lazy dog sleeps while the quick fox runs. " * 20)
    return SMRExperimentConfig(cores=("s5", "s4d"), seeds=(0,), steps=3, d_model=8, d_state=4, batch_size=4,
                               rates=(0.5, 1.0, 2.0), resolutions=(8, 16), holds=(1, 2), lm_len=16,
                               lm_eval_windows=4, lm_train=(str(tmp_path / "train.txt"),),
                               lm_valid=(str(tmp_path / "valid.txt"),))


@pytest.mark.slow
def test_tiny_grid_runs_resumes_and_reports(tmp_path, tiny):
    out = tmp_path / "smr.json"
    seen = []
    records = run_grid(tiny, out, on_records=lambda r: seen.append(len(r)))
    assert len(seen) == 4 * 2 * 2  # tasks x cores x (SMR off, on): outputs after every cell
    points = {(r["task"], r["mode"], r["c"]) for r in records}
    assert ("sines", "jitter", 0.5) in points and ("digits", "rate", 0.25) in points and ("lm", "rate", 2.0) in points
    assert all(r["metric"] == ("loss" if r["task"] == "lm" else "accuracy") for r in records)
    assert json.loads(out.read_text()) == records
    again = run_grid(tiny, out, on_records=lambda r: pytest.fail("a finished cell was trained again"))
    assert again == records
    md = report(records, "# test")
    assert "## listops (accuracy %)" in md and "Published ListOps accuracy" in md and "| s5 | jitter sigma=0.5 |" in md
    assert len(findings(records)) == 4 * 2


def test_the_command_writes_its_results_report_and_plot(tmp_path):
    out = tmp_path / "smr"
    assert main(["experiment", "smr", "--tasks", "sines", "--cores", "s4d", "--seeds", "0", "--set", "smr.steps=2",
                 "--set", "smr.d_model=8", "--set", "smr.d_state=4", "--set", "smr.batch_size=4",
                 "--set", "smr.rates=[0.5, 1.0]", "--out", str(out)]) == 0
    assert len(json.loads(out.with_suffix(".json").read_text())) > 0
    assert "sines" in out.with_suffix(".md").read_text() and out.with_suffix(".png").stat().st_size > 0


def test_bad_configs_and_files_are_refused_before_training(tmp_path, capsys):
    assert main(["experiment", "smr", "--set", "smr.cores=['s6']", "--out", str(tmp_path / "x")]) == 2
    assert "unknown cores ['s6']" in capsys.readouterr().err
    assert main(["experiment", "smr", "--set", "smr.rates=[2.0]", "--out", str(tmp_path / "x")]) == 2
    assert "must include the training rate" in capsys.readouterr().err
    (tmp_path / "bad.json").write_text("{}")
    assert main(["experiment", "smr", "--tasks", "sines", "--out", str(tmp_path / "bad")]) == 2
    assert "not a list of smr records" in capsys.readouterr().err
