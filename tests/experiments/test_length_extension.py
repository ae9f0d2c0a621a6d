import dataclasses

import pytest

from longssm.cli.main import main
from longssm.experiments.length_extension import LengthExtensionConfig, read_rows, run_config, validate, write_rows
from longssm.experiments.length_extension_report import findings, report


def _rows():
    """Hand-built measurements: the zero-initialised model degrades beyond T=16, the previous one
    does not, and only the previous one is hurt by shuffled windows."""
    rows = []
    for init in ("zero", "previous"):
        for L in (16, 256, 4096):
            zero = {"zero": {16: 2.0, 256: 2.5, 4096: 3.0}, "previous": {16: 2.2, 256: 1.9, 4096: 1.9}}[init][L]
            stream = {"zero": 2.3, "previous": 1.8}[init]
            shuffled = stream + {"zero": 0.0, "previous": 0.3}[init] * (L < 4096)
            for mode, order, loss in (("zero", "consecutive", zero), ("streaming", "consecutive", stream),
                                      ("streaming", "shuffled", shuffled)):
                rows.append({"model": "h3", "state_init": init, "train_len": 16, "eval_mode": mode, "order": order,
                             "eval_len": L, "loss": loss, "train_tokens": 1000, "train_seconds": 1.0,
                             "peak_train_mb": 500.0, "base_mb": 400.0, "params": 1234})
    return rows


def test_findings_and_report_read_the_numbers(tmp_path):
    f = findings(_rows())
    z, p = f[("h3", "zero", 16)], f[("h3", "previous", 16)]
    assert z["zero_rise"] == pytest.approx(1.0) and z["zero_at_longest"] == 3.0
    assert p["zero_rise"] == pytest.approx(0.0) and p["stream_longest"] == 1.8
    assert p["shuffle_penalty"] == pytest.approx(0.3) and z["shuffle_penalty"] == pytest.approx(0.0)
    md = report(_rows(), LengthExtensionConfig(), {})
    assert md.count(": holds") == 3 and "does not hold" not in md
    path = tmp_path / "le.csv"
    write_rows(path, _rows())
    back = read_rows(path)
    assert len(back) == 18 and back[0]["loss"] == min(r["loss"] for r in _rows() if r["eval_mode"] == "streaming"
                                                      and r["state_init"] == "previous")


def test_config_validation_and_equal_tokens_per_step():
    cfg = LengthExtensionConfig()
    validate(cfg)
    a, b = run_config(cfg, "mamba", 16, "previous"), run_config(cfg, "mamba", 256, "zero")
    assert a["train"]["tokens_per_step"] == b["train"]["tokens_per_step"] and a["train"]["steps"] == b["train"]["steps"]
    assert a["train"]["state_init"] == "previous" and a["train"]["out_dir"] != b["train"]["out_dir"]
    for bad, match in ((dict(models=("rnn",)), "unknown model"), (dict(train_lens=(24,)), "must divide"),
                       (dict(eval_lens=(16, 24, 64)), "must divide the longest"),
                       (dict(state_inits=("noise",)), "zero and/or previous")):
        with pytest.raises(ValueError, match=match):
            validate(dataclasses.replace(cfg, **bad))


def test_cli_help_and_missing_data(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["experiment", "length-extension", "--help"])
    assert e.value.code == 0 and "shuffled" in capsys.readouterr().out
    code = main(["experiment", "length-extension", "--train", str(tmp_path / "none"), "--out", str(tmp_path / "x")])
    assert code == 2 and "does not exist" in capsys.readouterr().err


def test_linear_ssm_fitted_on_short_range_extrapolates_badly():
    """LongSSM's theory at unit level: a diagonal linear SSM fitted to a long-memory (power-law)
    kernel on [0, T) from the zero state matches it there, and misses it far beyond T: outside the
    training range its kernel is an unconstrained sum of exponentials (polynomial extrapolation)."""
    import torch

    from longssm.kernels.diagonal import ssm_kernel
    from longssm.layers.cores import DiagonalCore

    torch.manual_seed(0)
    T, L = 16, 256
    target = (1 + torch.arange(L, dtype=torch.float64)) ** -0.5
    ssm = DiagonalCore(1, 16, init="lin", discretization="zoh", dt_min=0.05, dt_max=0.05).double()
    opt = torch.optim.Adam(ssm.parameters(), lr=1e-2)
    for _ in range(1500):
        loss = ((ssm_kernel(*ssm.discrete(), T)[0] - target[:T]) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        err = (ssm_kernel(*ssm.discrete(), L)[0] - target).abs()
    assert err[:T].max() < 0.02  # fitted on [0, T)
    assert err[T:].max() > 10 * err[:T].max()  # and wrong beyond it


def test_training_stats_counts_spikes(tmp_path):
    import json

    from longssm.experiments.length_extension_report import training_stats

    path = tmp_path / "metrics.jsonl"
    logs = [{"step": 10, "loss": 3.0, "grad_norm": 0.5}, {"step": 10, "val_loss": 9.0},
            {"step": 20, "loss": 2.0, "grad_norm": 4.0}, {"step": 30, "loss": 2.5, "grad_norm": 0.7},
            {"step": 40, "loss": 1.9, "grad_norm": 0.6}]
    path.write_text("\n".join(map(json.dumps, logs)) + "\n")
    st = training_stats(path)
    assert st == {"final_loss": pytest.approx(6.4 / 3), "max_grad_norm": 4.0, "spikes": 1}
    assert training_stats(tmp_path / "missing.jsonl") is None


def test_run_all_keeps_finished_runs(tmp_path):
    from longssm.experiments.length_extension import run_all, stats_file

    (tmp_path / "train").mkdir()
    (tmp_path / "valid").mkdir()
    (tmp_path / "train" / "a.txt").write_text("some training text " * 50)
    (tmp_path / "valid" / "b.txt").write_text("some validation text " * 50)
    out = tmp_path / "le"
    write_rows(out.with_suffix(".csv"), _rows() + _rows())  # duplicates collapse to one row each
    stats_file(out).write_text('{"h3/zero/16": {"final_loss": 1.2345, "max_grad_norm": 0.5, "spikes": 2}}')
    cfg = LengthExtensionConfig(models=("h3",), train_lens=(16,), eval_lens=(16, 256, 4096),
                                train=(str(tmp_path / "train"),), valid=(str(tmp_path / "valid"),),
                                runs_dir=str(tmp_path / "runs"))
    rows = run_all(cfg, out, progress=lambda *_: None)  # every run has rows: nothing is trained
    assert len(rows) == 18 and not (tmp_path / "runs" / "h3-T16-zero").exists()
    md = out.with_suffix(".md").read_text()
    assert out.with_suffix(".png").stat().st_size > 0 and ": holds" in md
    assert "| h3 | zero | 16 | 1.234 | 0.50 | 2 |" in md  # the stability table from the committed stats
    # the header names the files these runs used, not the default books
    assert f"validated on 1 files in `{tmp_path / 'valid'}` (1,050 tokens: b.txt)" in md and "Gutenberg" not in md
    other = tmp_path / "other"
    other.mkdir()
    (other / "c.txt").write_text("other validation text " * 50)
    with pytest.raises(ValueError, match="holds runs on other data"):
        run_all(dataclasses.replace(cfg, valid=(str(other),)), out, progress=lambda *_: None)


def test_two_commands_on_one_out_keep_each_others_runs(tmp_path):
    """Each finished run is merged into the files as they are now, not into the command's own
    copy from start-up: a second command on the same --out loses none of the first one's runs."""
    from longssm.experiments.length_extension import merge_results, read_stats, stats_file

    out, cfg = tmp_path / "le", LengthExtensionConfig(models=("h3",), train_lens=(16,), eval_lens=(16, 256, 4096))
    zero = [r for r in _rows() if r["state_init"] == "zero"]
    previous = [r for r in _rows() if r["state_init"] == "previous"]
    st = {"final_loss": 1.0, "max_grad_norm": 0.5, "spikes": 0}
    merge_results(out, zero, {"h3/zero/16": st}, cfg)  # command A finishes a run
    merged = merge_results(out, previous, {"h3/previous/16": st}, cfg)  # then command B, started before it
    assert len(merged) == 18 and read_rows(out.with_suffix(".csv")) == merged
    assert set(read_stats(stats_file(out))) == {"h3/zero/16", "h3/previous/16"}
    assert merge_results(out, [dict(zero[0], loss=9.0)], {}, cfg)[:18] == merged  # a finished row is not replaced
