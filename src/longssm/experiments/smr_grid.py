"""Running the SMR grid: cells in parallel processes (one torch thread each), records merged into
the results file after every cell (atomically), cells with records skipped, so an interrupted
run resumes where it stopped."""

from __future__ import annotations

from pathlib import Path

from tqdm import tqdm

from longssm.experiments.records import read_records, update_records
from longssm.experiments.smr import SMRExperimentConfig, Task, run_cell, validate
from longssm.experiments.workers import run_cells


def cell_key(r: dict) -> tuple:
    return r["task"], r["core"], bool(r["smr"]), r["seed"], r.get("d_model"), r.get("steps")


def load_records(path: Path) -> list[dict]:
    return read_records(path, {"task", "core", "smr", "seed"}, "smr")


def merge(old: list[dict], new: list[dict]) -> list[dict]:
    """New cells replace old records of the same cell; sorted for stable files."""
    done = {cell_key(r) for r in new}
    kept = [r for r in old if cell_key(r) not in done]
    return sorted(kept + new, key=lambda r: (r["task"], r["core"], r["smr"], r["seed"], r["mode"], r["c"]))


_TASKS: dict[str, Task] = {}


def _cell(args):
    """One cell in a worker (or this process), on one torch thread: the models are small."""
    import torch

    cfg, task, core, smr, seed, commit = args
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        if task not in _TASKS:  # task data built once per process
            _TASKS[task] = Task(task, cfg)
        return run_cell(cfg, _TASKS[task], core, smr, seed, commit)
    finally:
        torch.set_num_threads(threads)


def run_grid(cfg: SMRExperimentConfig, out: Path, *, jobs: int = 1, commit: str = "unknown", on_records=None) -> list[dict]:
    """Every cell of ``cfg`` without records in ``out`` (JSON); ``on_records(records)`` after each
    finished cell (the report and plot)."""
    validate(cfg)
    records = load_records(out)  # before any training: a bad file must not cost a run its results
    done = {cell_key(r) for r in records}
    todo = [(cfg, t, c, smr, s, commit) for t in cfg.tasks for c in cfg.cores for smr in (False, True)
            for s in cfg.seeds if (t, c, smr, s, cfg.d_model, cfg.steps) not in done]
    bar = tqdm(total=len(todo), desc="smr cells", unit="cell")

    def finished(new):
        nonlocal records
        r = new[0]
        at1 = next(p["value"] for p in new if p["mode"] == "rate" and p["c"] == 1.0)
        tqdm.write(f"{r['task']:>8} {r['core']:<6} smr={'on ' if r['smr'] else 'off'} seed {r['seed']}: "
                   f"{r['metric']} {at1:.3f} at c=1, {r['cpu_ms_per_step']:.0f} CPU ms/step")
        records = update_records(out, new, merge, load_records)
        if on_records:
            on_records(records)
        bar.update()

    run_cells(_cell, todo, jobs=jobs, on_done=finished, fresh=False)  # workers keep their task data
    bar.close()
    return records
