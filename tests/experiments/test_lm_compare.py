"""The language-model comparison: equal-size rows, the sweep picks the rates of the final runs,
finished cells are kept, and the report reads the numbers it is given."""

import dataclasses
import json
import statistics
from pathlib import Path

import numpy as np
import pytest
import torch

from longssm.experiments.lm_compare import (LMCompareConfig, best_lrs, cell_name, plan, prepare, rescore, run_all,
                                             run_config, run_order, training_rate, validate)
from longssm.experiments.lm_compare_report import plot, report, report_header
from longssm.evaluation.perplexity import evaluate
from longssm.models import LanguageModel, count_parameters, load_model
from longssm.models.presets import LM_COMPARE_MODELS, lm_compare_config


def test_rows_have_equal_non_embedding_parameters_within_5_percent():
    counts = {}
    for name in LM_COMPARE_MODELS:
        with torch.device("meta"):
            m = LanguageModel(lm_compare_config(name, vocab_size=8192))
        counts[name] = count_parameters(m) - m.backbone.embedding.weight.numel()
    mean = statistics.mean(counts.values())
    assert all(abs(c / mean - 1) <= 0.05 for c in counts.values()), counts
    assert lm_compare_config("hybrid", vocab_size=8192).mixers == ("h3", "attention", "h3", "h3", "attention", "h3")


def _rec(phase, model, lr, seed, steps, loss):
    return {"phase": phase, "model": model, "lr": lr, "seed": seed, "steps": steps, "val_loss": loss,
            "val_ppl": 2.718 ** loss, "params": 10, "non_embedding_params": 5, "train_tokens": steps * 64,
            "tokens_per_s": 100.0, "peak_mb": 50.0, "curve": [[64, loss + 1], [steps * 64, loss]]}


def test_started_runs_go_first_then_seed_by_seed_with_mamba_first(tmp_path):
    cfg = LMCompareConfig(models=("h3", "mamba"), seeds=(0, 1), runs_dir=str(tmp_path))
    cells = [("final", m, 1e-3, s) for m in ("h3", "mamba") for s in (0, 1)]
    assert run_order(cfg, cells) == [cells[2], cells[0], cells[3], cells[1]]
    started = Path(run_config(cfg, *cells[1])["train"]["out_dir"]) / "checkpoints"
    started.mkdir(parents=True)
    (started / "latest").write_text("step_0000010")
    assert run_order(cfg, cells) == [cells[1], cells[2], cells[0], cells[3]]


def test_the_sweep_comes_first_and_picks_each_models_rate():
    cfg = LMCompareConfig(models=("h3", "s4d"), seeds=(0, 1), sweep_lrs=(1e-3, 3e-3), sweep_steps=5, steps=9)
    assert plan(cfg, []) == [("sweep", m, lr, 0) for m in ("h3", "s4d") for lr in (1e-3, 3e-3)]
    sweep = [_rec("sweep", "h3", 1e-3, 0, 5, 2.0), _rec("sweep", "h3", 3e-3, 0, 5, 1.5),
             _rec("sweep", "s4d", 1e-3, 0, 5, 2.5), _rec("sweep", "s4d", 3e-3, 0, 5, 2.9)]
    assert best_lrs(sweep, 5) == {"h3": 3e-3, "s4d": 1e-3}
    assert plan(cfg, sweep[:3]) == [("sweep", "s4d", 3e-3, 0)]  # the final runs wait for the whole sweep
    assert plan(cfg, sweep) == [("final", "h3", 3e-3, 0), ("final", "h3", 3e-3, 1), ("final", "s4d", 1e-3, 0),
                                ("final", "s4d", 1e-3, 1)]
    finals = [_rec("final", "h3", 3e-3, 0, 9, 1.2), _rec("final", "h3", 3e-3, 1, 9, 1.4),
              _rec("final", "s4d", 1e-3, 0, 9, 1.9)]
    assert plan(cfg, sweep + finals) == [("final", "s4d", 1e-3, 1)]
    md = report(sweep + finals, "# test")
    assert "| h3 | 2 | 0.003 |" in md and "1.3000 ± 0.1414" in md and "| **1.5000** |" in md
    assert "Ordering here (lowest loss first): h3 < s4d" in md and "it holds (h3 < s4d)" in md
    assert "h3 < s4d by 0.6000 nats (one seed: no spread to compare yet)" in md  # s4d has one seed
    apart = finals + [_rec("final", "s4d", 1e-3, 1, 9, 1.95)]
    assert "h3 < s4d by 0.6250 nats (every seed apart)" in report(sweep + apart, "# test")
    alone = report(sweep + finals[:2], "# test")  # one model with final runs: nothing to order yet
    assert "too few of its models have final runs yet" in alone and "Neighbours" not in alone and "\n\n\n" not in alone
    close = finals + [_rec("final", "s4d", 1e-3, 1, 9, 1.35)]  # s4d's second seed beats h3's worst
    assert "h3 < s4d by 0.3250 nats (seed ranges overlap)" in report(sweep + close, "# test")
    assert "native" not in md
    finals[0]["backend"] = "native"  # a run made with LONGSSM_BACKEND=native is named as such
    assert "Runs of h3 used the `native` kernel backend" in report(sweep + finals, "# test")


def test_the_plot_draws_a_mean_line_per_model_and_a_band_over_its_seeds(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    figures = []
    monkeypatch.setattr(plt, "close", figures.append)  # keep the figure to look at it
    finals = [_rec("final", "h3", 3e-3, 0, 9, 1.2), _rec("final", "h3", 3e-3, 1, 9, 1.4),
              _rec("final", "s4d", 1e-3, 0, 9, 1.9)]
    plot(finals, tmp_path / "lm.png")
    assert (tmp_path / "lm.png").stat().st_size > 0
    ax = figures[0].axes[0]
    assert [line.get_label() for line in ax.lines] == ["h3 (2 seeds)", "s4d (1 seed)"]
    assert list(ax.lines[0].get_ydata()) == pytest.approx([2.3, 1.3])
    band = ax.collections[0].get_paths()[0].vertices[:, 1]  # one band: h3's two seeds
    assert len(ax.collections) == 1 and band.min() == pytest.approx(1.2) and band.max() == pytest.approx(2.4)
    scores = figures[0].axes[1]  # end-of-run scores, best model first: h3's two seeds and mean, then s4d's
    assert [t.get_text() for t in scores.get_xticklabels()] == ["h3", "s4d"]
    assert [list(line.get_ydata()) for line in scores.lines] == [[1.2, 1.4], [1.9]]
    assert [c.get_segments()[0][0][1] for c in scores.collections] == pytest.approx([1.3, 1.9])


def test_config_errors_name_the_key():
    with pytest.raises(ValueError, match="unknown model"):
        validate(LMCompareConfig(models=("gpt5",)))
    with pytest.raises(ValueError, match="lm_compare.steps must be >= 1"):
        validate(LMCompareConfig(steps=0))


def test_the_training_rate_is_the_median_interval_so_a_pause_does_not_count():
    logged = [{"step": 10, "tokens_per_s": 900.0}, {"step": 10, "val_loss": 5.0},
              {"step": 20, "tokens_per_s": 12.0},  # stopped for minutes in this interval
              {"step": 30, "tokens_per_s": 1000.0}]
    assert training_rate(logged) == 900.0
    assert training_rate([{"step": 10, "val_loss": 5.0}]) is None


@pytest.mark.slow
def test_a_tiny_grid_runs_resumes_and_reports(tmp_path):
    from conftest import corpus

    d = corpus(tmp_path)
    cfg = LMCompareConfig(models=("h3", "transformer"), seeds=(0,), d_model=16, seq_len=16, batch_size=2,
                          steps=6, warmup_steps=1, sweep_lrs=(1e-3, 1e-2), sweep_steps=3, eval_every=3,
                          eval_tokens=256, bpe_vocab_size=300, train=(str(d / "doc*.txt"),),
                          valid=(str(d / "valid.txt"),), runs_dir=str(tmp_path / "runs"))
    out = tmp_path / "lm.json"
    records = run_all(cfg, out, progress=lambda *_: None)
    assert sorted((r["phase"], r["model"]) for r in records) == sorted(
        [("sweep", m) for m in ("h3", "transformer") for _ in range(2)] + [("final", "h3"), ("final", "transformer")])
    final = [r for r in records if r["phase"] == "final"]
    assert all(r["steps"] == 6 and r["train_tokens"] == 6 * 32 and len(r["curve"]) == 2 for r in final)
    assert all(r["lr"] == best_lrs(records, 3)[r["model"]] for r in final)
    mtime = out.stat().st_mtime_ns
    assert run_all(cfg, out, progress=lambda *_: None) == records and out.stat().st_mtime_ns == mtime  # nothing rerun
    assert json.loads(out.read_text()) == records

    # eval_tokens grows to every validation token: the final runs are scored again from their saved
    # weights (not retrained) and keep their first scores; the sweep keeps the scores that picked the rates
    folder = lambda r: tmp_path / "runs" / cell_name(r["phase"], r["model"], r["lr"], r["seed"], r["steps"])  # noqa: E731
    logs = {r["model"]: (folder(r) / "metrics.jsonl").read_text() for r in final}
    wide = dataclasses.replace(cfg, eval_tokens=None)
    again = run_all(wide, out, progress=lambda *_: None)
    _, valid = prepare(wide, log=lambda *_: None)
    assert [r for r in again if r["phase"] == "sweep"] == [r for r in records if r["phase"] == "sweep"]
    for before in final:
        r = next(x for x in again if x["phase"] == "final" and x["model"] == before["model"])
        ev = evaluate(load_model(folder(r))[0], valid.tokens, 16, "zero", batch=8)
        assert r["val_tokens"] == ev["tokens"] > 256 and r["val_loss"] == round(ev["loss"], 5)
        assert (r["first_val_loss"], r["first_val_tokens"]) == (before["val_loss"], 256)
        assert (folder(r) / "metrics.jsonl").read_text() == logs[r["model"]]
    md = report(again, report_header(wide))
    assert "First scores: these runs were first scored on the first 256 validation tokens" in md
    assert f"{ev['tokens']:,} tokens from their start" in md and "every validation token" in md
    mtime = out.stat().st_mtime_ns
    assert run_all(wide, out, progress=lambda *_: None) == again and out.stat().st_mtime_ns == mtime


def test_a_run_whose_folder_is_gone_keeps_its_score_and_says_so(tmp_path):
    cfg = LMCompareConfig(seq_len=16, runs_dir=str(tmp_path / "runs"))
    rec = {**_rec("final", "h3", 1e-3, 0, 9, 1.5), "val_tokens": 128}
    said = []
    assert rescore(cfg, [rec], np.arange(1000), tmp_path / "lm.json", progress=said.append) == [rec]
    assert len(said) == 1 and cell_name("final", "h3", 1e-3, 0, 9) in said[0] and "128 tokens" in said[0]
    assert not (tmp_path / "lm.json").exists()


def test_the_header_names_lrs_only_where_they_are_used():
    swept, fixed = report_header(LMCompareConfig()), report_header(LMCompareConfig(sweep=False), quick=True)
    assert '"lrs"' not in swept and "best sweep rate (the lr column)" in swept and '"sweep": true' in swept
    assert '"lrs"' in fixed and "best sweep rate" not in fixed and "lm-compare --quick" in fixed
