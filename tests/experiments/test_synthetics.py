"""The synthetic-recall experiment: cells, records, reports and the CLI grid."""

import pytest


def test_synthetics_command_writes_records(tmp_path, capsys):
    import json

    from longssm.cli.main import main
    from longssm.experiments.synthetics import report

    out = tmp_path / "syn.json"
    assert main(["synthetics", "--task", "associative_recall", "--model", "h3-no-gate", "--seeds", "0",
                 "--max-epochs", "1", "--out", str(out)]) == 0
    (rec,) = json.loads(out.read_text())
    assert {"task", "model", "seed", "test_accuracy", "epochs", "seconds", "cpu_seconds"} <= set(rec)
    md = report([rec])
    assert 0 < rec["cpu_seconds"] and "| CPU s/epoch |" in md
    assert f"| 5,000 | {rec['test_accuracy']:.1f} | {rec['train_accuracy']:.1f} | 1 |" in md  # examples, test, train, seeds
    assert rec["task"] == "associative_recall" and rec["model"] == "h3-no-gate" and rec["epochs"] == 1
    assert rec["train_examples"] == 5000  # the H3 paper's training set
    assert 0 <= rec["test_accuracy"] <= 100
    assert "associative_recall | h3-no-gate" in out.with_suffix(".md").read_text()


@pytest.mark.slow
def test_synthetics_parallel_jobs(tmp_path):
    import json

    from longssm.cli.main import main

    out = tmp_path / "syn.json"
    assert main(["synthetics", "--task", "associative_recall", "--model", "h3-diag-only", "s4d", "--seeds", "1",
                 "--max-epochs", "1", "--jobs", "2", "--out", str(out)]) == 0
    recs = json.loads(out.read_text())
    assert sorted(r["model"] for r in recs) == ["h3-diag-only", "s4d"] and all(r["seed"] == 1 for r in recs)


def test_run_cell_stops_on_plateau():
    from longssm.data.synthetic import make_task
    from longssm.experiments.synthetics import SyntheticConfig, run_cell

    task = make_task("associative_recall", 0, n_train=64, n_test=16)
    cfg = SyntheticConfig(max_epochs=6, warmup_fraction=0.0, plateau=2, min_gain=1000.0)
    rec = run_cell(task, "attention", 0, cfg)
    # the first epoch sets the best; no later epoch can beat it by 1000 points
    assert rec["stopped"] == "plateau" and rec["epochs"] == 3
    rec = run_cell(task, "attention", 0, SyntheticConfig(max_epochs=2, plateau=0))
    assert rec["stopped"] == "max_epochs" and rec["epochs"] == 2


@pytest.mark.slow
def test_compiled_cell_trains_the_same_model():
    """synthetics.compile only changes speed: same losses and accuracies, same parameter names."""
    from longssm.data.synthetic import make_task
    from longssm.experiments.synthetics import SyntheticConfig, run_cell

    task = make_task("associative_recall", 0, n_train=64, n_test=16)
    seen = {}
    for compiled in (False, True):
        losses = []
        rec = run_cell(task, "s4d", 0, SyntheticConfig(max_epochs=2, embed_dropout=0.0, compile=compiled),
                       on_epoch=lambda epoch, loss, acc: losses.append(loss))
        seen[compiled] = (losses, rec["test_accuracy"], rec["train_accuracy"])
    assert seen[True][1:] == seen[False][1:]
    assert seen[True][0] == pytest.approx(seen[False][0], rel=1e-4)


def test_mqar_sweep_command(tmp_path, capsys):
    import json

    from longssm.cli.main import main

    out = tmp_path / "syn.json"
    assert main(["synthetics", "--task", "mqar", "--model", "h3", "--seq-len", "32", "--d-model", "8", "16",
                 "--vocab", "32", "--max-epochs", "1", "--train-examples", "200", "--out", str(out)]) == 0
    recs = json.loads(out.read_text())
    # one cell per (seq_len, d_model); pairs default to seq_len / 16
    assert sorted((r["seq_len"], r["d_model"], r["pairs"], r["vocab"], r["train_examples"]) for r in recs) == [
        (32, 8, 2, 32, 200), (32, 16, 2, 32, 200)]
    assert (tmp_path / "syn_mqar.png").stat().st_size > 0
    capsys.readouterr()
    assert main(["synthetics", "--task", "mqar", "--seq-len", "16", "32", "--pairs", "1", "--out", str(out)]) == 2
    assert "one value per --seq-len" in capsys.readouterr().err


def test_merge_records_keeps_training_set_sizes_apart():
    from longssm.experiments.synthetics import merge_records, report

    base = dict(task="mqar", model="h3", seed=0, d_model=64, seq_len=64, pairs=4, epochs=3, stopped="max_epochs",
                train_accuracy=50.0, commit="x")
    old = [dict(base, train_examples=5000, test_accuracy=10.0), dict(base, train_examples=100_000, test_accuracy=20.0)]
    merged = merge_records(old, [dict(base, train_examples=5000, test_accuracy=30.0)])
    assert sorted((r["train_examples"], r["test_accuracy"]) for r in merged) == [(5000, 30.0), (100_000, 20.0)]
    md = report(merged)  # one row per training-set size, never a mean across them
    assert "| 5,000 | 30.0 |" in md and "| 100,000 | 20.0 |" in md


def test_synthetics_command_reads_older_records_and_rejects_bad_files(tmp_path, capsys):
    import json

    from longssm.cli.main import main

    out = tmp_path / "syn.json"
    legacy = dict(task="induction_head", model="s4d", seed=0, d_model=32, seq_len=31, test_accuracy=10.0,
                  train_accuracy=12.0, epochs=400, stopped="max_epochs", commit="old")  # no train_examples
    out.write_text(json.dumps([legacy]))
    assert main(["synthetics", "--task", "associative_recall", "--model", "h3", "--seeds", "0",
                 "--max-epochs", "1", "--out", str(out)]) == 0
    recs = json.loads(out.read_text())
    assert sorted((r["task"], r["train_examples"]) for r in recs) == [("associative_recall", 5000),
                                                                       ("induction_head", 5000)]
    out.write_text("{not json")
    capsys.readouterr()
    assert main(["synthetics", "--task", "associative_recall", "--model", "h3", "--out", str(out)]) == 2
    assert "not a JSON results file" in capsys.readouterr().err
    out.write_text(json.dumps({"task": "x"}))
    assert main(["synthetics", "--task", "associative_recall", "--model", "h3", "--out", str(out)]) == 2
    assert "not a list of synthetics records" in capsys.readouterr().err
    assert out.read_text() == json.dumps({"task": "x"})  # left as it was


def test_records_trained_off_the_default_schedule_are_kept_apart():
    from longssm.experiments.synthetics import merge_records, report

    base = {"task": "associative_recall", "model": "h3", "seed": 0, "test_accuracy": 90.0, "train_accuracy": 99.0,
            "epochs": 10, "d_model": 32, "seq_len": 20, "train_examples": 5000}
    tuned = {**base, "test_accuracy": 50.0, "overrides": {"lr": 0.001}}
    merged = merge_records([base], [tuned])
    assert len(merged) == 2
    md = report(merged)
    assert "| h3 (lr=0.001) |" in md
    assert "90.0 (1 seed) · paper 99.8" in md  # the paper's table averages default-schedule records only
