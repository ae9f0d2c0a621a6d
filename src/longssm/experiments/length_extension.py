"""LongSSM length extension (Wang, 2024): zero- vs previous-initialised hidden states.

Every (model, training length T, state_init) is trained on the same tokens per step and the same
total tokens (batch = tokens_per_step / T), then evaluated on the validation books at lengths
``eval_lens`` in three ways: zero-state windows, streaming over consecutive windows, streaming
over shuffled windows (see :func:`longssm.evaluation.perplexity.evaluate_streams`). Each run is a
fresh process, so its peak memory (``VmHWM`` on CPU, ``max_memory_allocated`` on CUDA) is its own.

The paper's claims (section 4, Figure 1): from zero states, extension beyond T is polynomial
extrapolation and fails; with the previous segment's final state as the initial state (detached,
consecutive data) the states seen in training cover long histories, extension is interpolation,
and a model trained at T = 16 extends to 32K.
"""

from __future__ import annotations

import csv
import json
import multiprocessing
import time
from dataclasses import dataclass
from pathlib import Path

from longssm.experiments.records import folder_lock, write_atomic
from longssm.experiments.workers import checkpoint_every, peak_memory_mb, run_cells, watch_runs
from longssm.experiments.length_extension_report import plot, report, stats_key, training_stats
from longssm.models import model_config
from longssm.models.presets import LENGTH_EXTENSION_MODELS as MODELS

COLUMNS = ["model", "state_init", "train_len", "eval_mode", "order", "eval_len", "loss",
           "train_tokens", "train_seconds", "peak_train_mb", "base_mb", "params"]


@dataclass(frozen=True)
class LengthExtensionConfig:
    """The length-extension grid (``longssm experiment length-extension --help``)."""

    models: tuple[str, ...] = ("mamba", "h3")
    """Model rows (``LENGTH_EXTENSION_MODELS`` in the model table)."""
    train_lens: tuple[int, ...] = (16, 64, 256)
    """Training segment lengths T; each divides tokens_per_step."""
    state_inits: tuple[str, ...] = ("zero", "previous")
    """Initial hidden state of each training segment: zero and/or previous (LongSSM)."""
    eval_lens: tuple[int, ...] = tuple(16 << i for i in range(11))
    """Evaluation lengths (16 ... 16384); each divides the longest."""
    d_model: int = 128
    """Model width."""
    n_layer: int = 4
    """Blocks."""
    tokens_per_step: int = 4096
    """Tokens per optimiser step at every T (batch = tokens_per_step / T)."""
    total_tokens: int = 8 << 20
    """Training tokens per run."""
    lr: float = 2e-3
    """Peak learning rate."""
    warmup_steps: int = 100
    """Linear warm-up steps."""
    eval_streams: int = 16
    """Validation pieces of the longest evaluation length, cut from the validation books."""
    train: tuple[str, ...] = ("../shared/data/gutenberg/train",)
    """Training books."""
    valid: tuple[str, ...] = ("../shared/data/gutenberg/valid",)
    """Validation books."""
    runs_dir: str = "runs/length_extension"
    """Where each run's folder (checkpoints, metrics) lives."""
    seed: int = 0
    """Seed of every run."""

    @property
    def steps(self) -> int:
        return max(1, self.total_tokens // self.tokens_per_step)


QUICK = dict(models=("h3",), train_lens=(16, 256), eval_lens=(16, 64, 256, 1024, 4096, 16384),
             total_tokens=3 << 19, eval_streams=8)


def validate(cfg: LengthExtensionConfig) -> None:
    unknown = sorted(set(cfg.models) - set(MODELS))
    if unknown:
        raise ValueError(f"unknown model(s) {unknown}; expected {', '.join(MODELS)}")
    for T in cfg.train_lens:
        if T < 1 or cfg.tokens_per_step % T:
            raise ValueError(f"train length {T} must divide tokens_per_step={cfg.tokens_per_step}")
    S = max(cfg.eval_lens)
    if any(S % L for L in cfg.eval_lens):
        raise ValueError(f"every evaluation length must divide the longest ({S}): {cfg.eval_lens}")
    bad = set(cfg.state_inits) - {"zero", "previous"}
    if bad:
        raise ValueError(f"state_inits must be zero and/or previous, got {sorted(bad)}")


def run_config(cfg: LengthExtensionConfig, model: str, T: int, init: str) -> dict:
    arch, kw = MODELS[model]
    fields = model_config(arch, vocab_size=256, d_model=cfg.d_model, n_layer=cfg.n_layer, **kw).to_dict()
    del fields["vocab_size"]  # set by the tokenizer
    return {
        "model": fields,
        "data": {"train": list(cfg.train), "valid": list(cfg.valid), "tokenizer": "byte",
                 "cache_dir": f"{cfg.runs_dir}/data"},
        "train": {"steps": cfg.steps, "seq_len": T, "tokens_per_step": cfg.tokens_per_step, "lr": cfg.lr,
                  "warmup_steps": cfg.warmup_steps, "state_init": init, "seed": cfg.seed, "eval_every": 0,
                  "eval_batches": 2, "checkpoint_every": checkpoint_every(cfg.steps), "log_every": 10,
                  "out_dir": f"{cfg.runs_dir}/{model}-T{T}-{init}"},
    }


def run_one(cfg: LengthExtensionConfig, model_name: str, T: int, init: str) -> list[dict] | None:
    """Train one run (resuming a finished or interrupted one) and evaluate it; one process. None
    when the training was interrupted (SIGINT / SIGTERM)."""
    import torch

    from longssm.data.prepare import prepare_splits
    from longssm.evaluation.perplexity import cut_streams, evaluate_streams
    from longssm.models import count_parameters, load_model
    from longssm.training.config import resolve
    from longssm.training.loop import train

    run = resolve(run_config(cfg, model_name, T, init))
    base = peak_memory_mb("VmRSS")
    t0 = time.time()
    if train(run, resume="auto", progress=False, log=lambda *_: None).get("interrupted"):
        return None  # checkpointed; no rows, so the next run resumes this one
    seconds, peak = time.time() - t0, peak_memory_mb("VmHWM")
    model, _, record, _ = load_model(run.train.out_dir)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model.to(device)
    _, valid = prepare_splits(run.data, run.data.cache_dir, log=lambda *_: None)
    ends = list(valid.doc_starts[1:]) + [valid.tokens.size]
    docs = [valid.tokens[s:e] for s, e in zip(valid.doc_starts, ends)]
    streams = cut_streams(docs, max(cfg.eval_lens), cfg.eval_streams)
    meta = {"model": model_name, "state_init": init, "train_len": T,
            "train_tokens": record["step"] * cfg.tokens_per_step, "train_seconds": round(seconds, 1),
            "peak_train_mb": round(peak, 1), "base_mb": round(base, 1), "params": count_parameters(model)}
    rows = []
    for L in cfg.eval_lens:
        for mode, order in (("zero", "consecutive"), ("streaming", "consecutive"), ("streaming", "shuffled")):
            r = evaluate_streams(model, streams, L, mode, order, seed=cfg.seed, device=device)
            rows.append({**meta, "eval_mode": mode, "order": order, "eval_len": L, "loss": round(r["loss"], 5)})
    return rows


def _child(args):
    import torch

    cfg, model, T, init, threads = args
    if threads:
        torch.set_num_threads(threads)
    return run_one(cfg, model, T, init)


def read_rows(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with open(path) as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        r["train_len"], r["eval_len"] = int(r["train_len"]), int(r["eval_len"])
        r["loss"] = float(r["loss"])
    return rows


def write_rows(path: Path, rows: list[dict]) -> None:
    """Atomically, sorted, one row per measurement (the first of duplicates is kept)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    key = lambda r: (r["model"], r["state_init"], int(r["train_len"]), r["eval_mode"], r["order"], int(r["eval_len"]))
    unique = {}
    for r in rows:
        unique.setdefault(key(r), r)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        w.writeheader()
        w.writerows(sorted(unique.values(), key=key))
    tmp.replace(path)


def run_all(cfg: LengthExtensionConfig, out: Path, *, jobs: int = 1, progress=print) -> list[dict]:
    """All runs of the grid (new ones only: runs with rows in ``out.csv`` are kept), then
    the CSV, the plot and the report after every finished run."""
    validate(cfg)
    from longssm.data.prepare import prepare_splits
    from longssm.training.config import resolve

    # Tokenise once here: parallel runs would otherwise race to fill the same cache.
    data = resolve(run_config(cfg, cfg.models[0], cfg.train_lens[0], "zero")).data
    shards = prepare_splits(data, data.cache_dir, log=progress)
    csv_path, stats_path = out.with_suffix(".csv"), stats_file(out)
    rows = read_rows(csv_path)
    stats = read_stats(stats_path)
    described = describe_data(*shards)
    if rows and stats.get("data") not in (None, described):
        raise ValueError(f"{csv_path} holds runs on other data ({stats['data']['valid']}); "
                         f"give another --out for this data")
    have = {(r["model"], r["train_len"], r["state_init"]) for r in rows}
    todo = [(m, T, i) for m in cfg.models for T in cfg.train_lens for i in cfg.state_inits if (m, T, i) not in have]
    todo.sort(key=lambda r: (r[1], r[2] != "previous"))  # slowest first (short T, carried states)
    if todo:
        threads = max(1, (multiprocessing.cpu_count() // max(1, jobs)))
        finished = 0

        def done(new):
            nonlocal rows, finished
            r, finished = new[0], finished + 1
            run_dir = Path(cfg.runs_dir) / f"{r['model']}-T{r['train_len']}-{r['state_init']}"
            key = stats_key(r["model"], r["state_init"], r["train_len"])
            rows = merge_results(out, new, {"data": described, key: training_stats(run_dir / "metrics.jsonl")}, cfg)
            progress(f"[{finished}/{len(todo)}] {r['model']} T={r['train_len']} {r['state_init']}: trained "
                     f"{r['train_tokens']:,} tokens in {r['train_seconds']:.0f} s, peak {r['peak_train_mb']:.0f} MB")

        runs = [(t["out_dir"], t["steps"]) for t in (run_config(cfg, *c)["train"] for c in todo)]
        with watch_runs(runs, f"length-extension ({len(todo)} runs)"):
            finished = run_cells(_child, [(cfg, m, T, i, threads) for m, T, i in todo], jobs=jobs, on_done=done)
        if not finished:
            progress("interrupted: the unfinished runs kept their checkpoints; the same command resumes them")
    elif rows:
        rows = merge_results(out, [], {"data": described}, cfg)
    return rows


def merge_results(out: Path, rows: list[dict], stats: dict, cfg: LengthExtensionConfig) -> list[dict]:
    """Add ``rows`` and ``stats`` entries to OUT.csv and its stats file, read again under the folder's
    lock (another command's runs since this one started are kept), then rewrite the plot and report
    from the merged rows. Returns the merged rows."""
    csv_path, stats_path = out.with_suffix(".csv"), stats_file(out)
    with folder_lock(out):
        rows = read_rows(csv_path) + rows  # the first of duplicates is kept: finished rows stay
        write_rows(csv_path, rows)
        stats = read_stats(stats_path) | stats
        write_atomic(stats_path, json.dumps(stats, indent=1, sort_keys=True) + "\n")
        rows = read_rows(csv_path)
        _write_outputs(rows, stats, cfg, out)
    return rows


def describe_data(train, valid) -> dict:
    """What a grid was trained and evaluated on, from the prepared shards' manifests: the source
    files (as given), their token counts and the tokenizer's hash."""
    files = lambda shard: [[src["name"], src["tokens"]] for src in shard.manifest["sources"]]
    return {"train": files(train), "valid": files(valid), "tokenizer_hash": train.manifest["tokenizer_hash"]}


def stats_file(out: Path) -> Path:
    """OUT_training.json: each run's training statistics (:func:`training_stats`), kept with the
    results so the report regenerates from committed files without the run folders."""
    return out.with_name(out.stem + "_training.json")


def read_stats(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


def _write_outputs(rows, stats, cfg, out: Path) -> None:
    plot(rows, out.with_suffix(".png"))
    out.with_suffix(".md").write_text(report(rows, cfg, stats))
