"""H3's language-model comparison (Fu et al. 2023, section 5.2, Table 3) at CPU scale.

Every model of ``LM_COMPARE_MODELS`` (S4D, H3, Transformer, the H3-attention hybrid, Mamba; about
equal non-embedding parameters) trains on the same tokens of the Gutenberg training books, with the
same schedule and batch, and is scored on the validation books (zero-state windows of the training
length). The tokenizer is a byte-level BPE of ``bpe_vocab_size`` tokens trained on the training
books. Two phases, each a list of cells that resume from their checkpoints:

* ``sweep``: every model at every learning rate of ``sweep_lrs`` for ``sweep_steps`` (seed 0); the
  best final validation loss picks each model's learning rate;
* ``final``: every model at its picked learning rate (``lrs`` when the sweep did not run) for
  ``steps``, one cell per seed.

Records (one per cell) merge into one JSON file; finished cells are skipped, so a grid completes
over several sittings.
"""

from __future__ import annotations

import json
import math
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

from longssm.experiments.records import read_records, update_records
from longssm.experiments.workers import checkpoint_every, peak_memory_mb, run_cells, watch_runs
from longssm.models.presets import LM_COMPARE_MODELS

#: The paper's Table 3 (125M models trained on OpenWebText): validation perplexity.
PAPER_PPL = {"hybrid": 19.6, "transformer": 20.6, "h3": 21.0, "s4d": 24.9}


@dataclass(frozen=True)
class LMCompareConfig:
    """The language-model comparison (``longssm experiment lm-compare --help``)."""

    models: tuple[str, ...] = tuple(LM_COMPARE_MODELS)
    """Model rows (LM_COMPARE_MODELS in the model table)."""
    seeds: tuple[int, ...] = (0, 1, 2)
    """Seeds of the final runs."""
    d_model: int = 256
    """Width of every model (depths from the model table)."""
    seq_len: int = 256
    """Training and evaluation window (tokens)."""
    batch_size: int = 16
    """Rows per step."""
    steps: int = 1200
    """Optimiser steps of a final run."""
    warmup_steps: int = 100
    """Linear warm-up steps (cosine decay to 10% after)."""
    sweep: bool = True
    """Run the learning-rate sweep first and train the final runs at each model's best rate."""
    sweep_lrs: tuple[float, ...] = (3e-4, 1e-3, 3e-3)
    """Learning rates of the sweep."""
    sweep_steps: int = 300
    """Optimiser steps of a sweep run."""
    lrs: dict[str, float] = field(default_factory=lambda: {"s4d": 1e-3, "h3": 1e-3, "transformer": 1e-3,
                                                          "hybrid": 1e-3, "mamba": 1e-3})
    """Learning rate per model when the sweep is off and the results file holds no sweep."""
    eval_every: int = 100
    """Steps between the validation points of the loss curve."""
    eval_tokens: int | None = None
    """Validation tokens scored at the end of a run, from the start of the validation books (unset:
    all of them). A finished final run scored on fewer tokens is scored again from its saved weights
    the next time the command runs, and keeps its first score beside the new one."""
    bpe_vocab_size: int = 8192
    """BPE vocabulary, trained on the training books."""
    train: tuple[str, ...] = ("../shared/data/gutenberg/train",)
    """Training books."""
    valid: tuple[str, ...] = ("../shared/data/gutenberg/valid",)
    """Validation books."""
    runs_dir: str = "runs/lm_compare"
    """Where each run's folder (checkpoints, metrics) lives."""


#: Validation batches of the training loop's periodic evaluation (the loss curve).
CURVE_BATCHES = 4

#: Rows (streams) of the end-of-run validation score.
EVAL_BATCH = 8

QUICK = dict(seeds=(0,), steps=250, sweep=False, eval_every=25, eval_tokens=65536)


def validate(cfg: LMCompareConfig) -> None:
    unknown = sorted(set(cfg.models) - set(LM_COMPARE_MODELS))
    if unknown:
        raise ValueError(f"unknown model(s) {unknown}; expected {', '.join(LM_COMPARE_MODELS)}")
    missing = sorted(set(cfg.models) - set(cfg.lrs))
    if missing:
        raise ValueError(f"lm_compare.lrs has no learning rate for {missing}")
    for name in ("steps", "sweep_steps", "seq_len", "batch_size", "eval_every", "eval_tokens", "d_model"):
        if getattr(cfg, name) is not None and getattr(cfg, name) < 1:
            raise ValueError(f"lm_compare.{name} must be >= 1, got {getattr(cfg, name)}")
    if not cfg.seeds or not cfg.models or (cfg.sweep and not cfg.sweep_lrs):
        raise ValueError("lm_compare needs at least one model, one seed and (with the sweep) one learning rate")


def _data(cfg: LMCompareConfig) -> dict:
    return {"train": list(cfg.train), "valid": list(cfg.valid), "tokenizer": "bpe",
            "bpe_vocab_size": cfg.bpe_vocab_size, "cache_dir": f"{cfg.runs_dir}/data"}


def cell_name(phase: str, model: str, lr: float, seed: int, steps: int) -> str:
    return f"{phase}-{model}-lr{lr:g}-s{seed}-{steps}steps"


def run_config(cfg: LMCompareConfig, phase: str, model: str, lr: float, seed: int) -> dict:
    from longssm.models.presets import lm_compare_config

    fields = lm_compare_config(model, vocab_size=cfg.bpe_vocab_size, d_model=cfg.d_model).to_dict()
    del fields["vocab_size"]  # set by the tokenizer
    steps = cfg.sweep_steps if phase == "sweep" else cfg.steps
    return {"model": fields, "data": _data(cfg),
            "train": {"steps": steps, "batch_size": cfg.batch_size, "seq_len": cfg.seq_len, "lr": lr,
                      "warmup_steps": min(cfg.warmup_steps, steps // 10), "seed": seed,
                      "eval_every": cfg.eval_every, "eval_batches": CURVE_BATCHES, "checkpoint_every": checkpoint_every(steps),
                      "log_every": 10, "out_dir": f"{cfg.runs_dir}/{cell_name(phase, model, lr, seed, steps)}"}}


def run_cell(args) -> dict | None:
    """Train one cell (resuming an interrupted one) and score it; one worker process. None when
    the training was interrupted (SIGINT / SIGTERM)."""
    import torch

    from longssm.data.prepare import prepare_splits
    from longssm.evaluation.perplexity import evaluate
    from longssm.kernels.backend import resolve as resolve_backend
    from longssm.models import count_parameters, load_model
    from longssm.training.config import resolve
    from longssm.training.loop import train

    cfg, phase, model_name, lr, seed, threads = args
    torch.set_num_threads(threads)
    run = resolve(run_config(cfg, phase, model_name, lr, seed))
    t0 = time.time()
    last = train(run, resume="auto", progress=False, log=lambda *_: None)
    if last.get("interrupted"):
        return None  # checkpointed; no record, so the next run resumes this cell
    seconds, peak = time.time() - t0, peak_memory_mb("VmHWM")
    model, _, record, _ = load_model(run.train.out_dir)
    _, valid = prepare_splits(run.data, run.data.cache_dir, log=lambda *_: None)
    ev = evaluate(model, valid.tokens, cfg.seq_len, "zero", batch=EVAL_BATCH, max_tokens=cfg.eval_tokens)
    metrics = [json.loads(line) for line in (Path(run.train.out_dir) / "metrics.jsonl").read_text().splitlines()]
    tokens_per_step = run.train.global_batch * run.train.seq_len
    curve = [[m["step"] * tokens_per_step, round(m["val_loss"], 5)] for m in metrics if "val_loss" in m]
    tokens_per_s = training_rate(metrics) or record["step"] * tokens_per_step / seconds
    emb = model.backbone.embedding.weight.numel()
    return {"phase": phase, "model": model_name, "lr": lr, "seed": seed, "steps": record["step"],
            "params": count_parameters(model), "non_embedding_params": count_parameters(model) - emb,
            "train_tokens": record["step"] * tokens_per_step, "tokens_per_s": round(tokens_per_s, 1),
            "threads": threads, "backend": resolve_backend(model.config.backend), "peak_mb": round(peak, 1),
            "val_loss": round(ev["loss"], 5), "val_ppl": round(math.exp(ev["loss"]), 3), "val_tokens": ev["tokens"], "final_train_loss": round(last.get("loss", float("nan")), 5), "curve": curve}


def curve_tokens(cfg: LMCompareConfig) -> int:
    """Validation tokens behind each point of the loss curve: the training loop scores the first
    CURVE_BATCHES batches of the validation books (fewer than the end-of-run score)."""
    return CURVE_BATCHES * cfg.batch_size * cfg.seq_len


def rescore(cfg: LMCompareConfig, records: list[dict], valid_tokens, out: Path, *, progress=print) -> list[dict]:
    """Score again, from their runs' saved weights, the final runs whose records cover fewer
    validation tokens than ``cfg.eval_tokens`` asks for (a grid first run with a smaller
    ``eval_tokens``); each record keeps its first score as ``first_val_loss`` / ``first_val_tokens``.
    Sweep records keep theirs: those scores picked the final runs' rates. A run whose folder or
    final checkpoint is gone keeps its score, and ``progress`` says so. Returns the records as
    written to ``out``."""
    from tqdm.auto import tqdm

    from longssm.evaluation.perplexity import evaluate, scored_tokens
    from longssm.models import load_model
    from longssm.models.checkpoint import has_checkpoint

    want = scored_tokens(len(valid_tokens), cfg.seq_len, EVAL_BATCH, cfg.eval_tokens)
    stale = []  # (record, its run folder)
    for r in records:
        if r["phase"] == "final" and r.get("val_tokens", 0) < want:
            folder = Path(cfg.runs_dir) / cell_name(r["phase"], r["model"], r["lr"], r["seed"], r["steps"])
            if has_checkpoint(folder):
                stale.append((r, folder))
            else:
                progress(f"lm-compare: {folder} is gone; its record keeps its score on {r.get('val_tokens')} tokens")
    rescored = []
    with tqdm(total=len(stale) * want, unit="tok", disable=not stale,
              desc=f"lm-compare: scoring {len(stale)} final runs on {want:,} validation tokens") as bar:
        for r, folder in stale:
            model, _, saved, _ = load_model(folder)
            if saved["step"] != r["steps"]:
                raise ValueError(f"{folder}: the newest checkpoint is at step {saved['step']}, "
                                 f"but the record is of step {r['steps']}")
            seen = [0]

            def advance(count):
                bar.update(count - seen[0])
                seen[0] = count

            ev = evaluate(model, valid_tokens, cfg.seq_len, "zero", batch=EVAL_BATCH, max_tokens=cfg.eval_tokens,
                          progress=advance)
            rescored.append({**r, "val_loss": round(ev["loss"], 5), "val_ppl": round(math.exp(ev["loss"]), 3),
                             "val_tokens": ev["tokens"], "first_val_loss": r.get("first_val_loss", r["val_loss"]),
                             "first_val_tokens": r.get("first_val_tokens", r.get("val_tokens"))})
    return update_records(out, rescored, merge, load_records) if rescored else records


def training_rate(metrics: list[dict]) -> float | None:
    """Training tokens/s of a run: the median of its logging intervals' rates (``metrics.jsonl``). A
    pause (SIGSTOP, a suspended laptop) or an evaluation falls in a few intervals and would otherwise
    pull a whole-wall-clock rate down. None when no interval was logged."""
    rates = [m["tokens_per_s"] for m in metrics if "tokens_per_s" in m]
    return statistics.median(rates) if rates else None


def cell_key(r: dict) -> tuple:
    return r["phase"], r["model"], float(r["lr"]), r["seed"], r["steps"]


def load_records(path: Path) -> list[dict]:
    return read_records(path, {"phase", "model", "lr", "seed", "steps", "val_loss"}, "lm-compare")


def best_lrs(records: list[dict], steps: int) -> dict[str, float]:
    """Each model's sweep learning rate with the lowest validation loss (sweeps of ``steps``)."""
    best: dict[str, tuple[float, float]] = {}
    for r in records:
        if r["phase"] == "sweep" and r["steps"] == steps and not math.isnan(r["val_loss"]):
            if r["model"] not in best or r["val_loss"] < best[r["model"]][0]:
                best[r["model"]] = (r["val_loss"], r["lr"])
    return {m: lr for m, (_, lr) in best.items()}


def plan(cfg: LMCompareConfig, records: list[dict]) -> list[tuple]:
    """The cells still to run, as (phase, model, lr, seed): the sweep's while any is missing (the
    final runs need its picks), then the final runs at the picked rates (without the sweep: at the
    picks of sweep records already in the file, else at ``lrs``)."""
    done = {cell_key(r) for r in records}
    missing = lambda cells, steps: [c for c in cells if (c[0], c[1], float(c[2]), c[3], steps) not in done]
    if cfg.sweep:
        sweep = missing([("sweep", m, lr, 0) for m in cfg.models for lr in cfg.sweep_lrs], cfg.sweep_steps)
        if sweep:
            return sweep
    picked = best_lrs(records, cfg.sweep_steps)
    lrs = {m: picked.get(m, cfg.lrs.get(m)) for m in cfg.models}
    return missing([("final", m, lrs[m], s) for m in cfg.models for s in cfg.seeds], cfg.steps)


def run_order(cfg: LMCompareConfig, cells: list[tuple]) -> list[tuple]:
    """The order the cells run in: cells with a checkpoint first (finish what was started), then seed
    by seed, so an unfinished grid has every model at its first seeds rather than some models at all
    seeds; within a seed the slowest model (Mamba) first, so the grid does not end on one long run."""
    from longssm.models.checkpoint import has_checkpoint

    started = lambda c: has_checkpoint(run_config(cfg, *c)["train"]["out_dir"])  # noqa: E731
    return sorted(cells, key=lambda c: (not started(c), c[3], c[1] != "mamba"))


def merge(old: list[dict], new: list[dict]) -> list[dict]:
    keys = {cell_key(r) for r in new}
    return sorted([r for r in old if cell_key(r) not in keys] + new,
                  key=lambda r: (r["phase"], r["model"], r["lr"], r["seed"], r["steps"]))


def prepare(cfg: LMCompareConfig, log=print):
    """Tokenise once here, before the workers start (they would race to fill the same cache)."""
    from longssm.data.prepare import prepare_splits
    from longssm.training.config import resolve

    data = resolve(run_config(cfg, "final", cfg.models[0], cfg.lrs.get(cfg.models[0], 1e-3), cfg.seeds[0])).data
    return prepare_splits(data, data.cache_dir, log=log)


def run_all(cfg: LMCompareConfig, out: Path, *, jobs: int = 1, progress=print, on_records=None) -> list[dict]:
    """Every cell without a record in ``out`` (sweep first, then the final runs at the picked rates);
    ``on_records(records)`` after each finished cell (report and plot)."""
    import multiprocessing

    validate(cfg)
    records = load_records(out)  # before any training: a bad file must not cost a run its results
    _, valid = prepare(cfg, log=progress)
    records = rescore(cfg, records, valid.tokens, out, progress=progress)
    threads = max(1, multiprocessing.cpu_count() // max(1, jobs))
    for _ in range(2):  # the sweep, then the final runs it picks the rates for
        todo = run_order(cfg, plan(cfg, records))
        if not todo:
            break
        count = [0]

        def done(rec):
            nonlocal records
            count[0] += 1
            records = update_records(out, [rec], merge, load_records)
            if on_records:
                on_records(records)
            progress(f"[{count[0]}/{len(todo)}] {rec['phase']} {rec['model']} lr {rec['lr']:g} seed {rec['seed']}: "
                     f"val ppl {rec['val_ppl']:.2f} after {rec['train_tokens']:,} tokens "
                     f"({rec['tokens_per_s']:,.0f} tok/s, peak {rec['peak_mb']:.0f} MB)")

        runs = [(t["out_dir"], t["steps"]) for t in (run_config(cfg, *c)["train"] for c in todo)]
        with watch_runs(runs, f"lm-compare {todo[0][0]} ({len(todo)} runs)"):
            finished = run_cells(run_cell, [(cfg, *c, threads) for c in todo], jobs=jobs, on_done=done)
        if not finished:
            progress("interrupted: the unfinished cells kept their checkpoints; the same command resumes them")
            break
    return records
