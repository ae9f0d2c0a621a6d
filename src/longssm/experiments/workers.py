"""Worker processes of the parallel grids die with the process that started them: a grid whose
parent is killed (SIGKILL, a scheduler's job end) leaves no cells running on their own. The
parent shows the workers' training as one progress bar read from their run folders."""

from __future__ import annotations

import ctypes
import json
import os
import signal
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def die_with_parent(parent: int) -> None:
    """Ask the kernel to send this process SIGTERM when its parent (pid ``parent``, which started
    it) exits (Linux; elsewhere the workers end when their task queue breaks). A parent that died
    before this ran sent nothing, so that is checked after the request: such an orphan would
    otherwise wait on its task queue forever (it holds the queue's write end itself)."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:
            os.kill(os.getpid(), signal.SIGTERM)


def checkpoint_every(steps: int) -> int:
    """The checkpoint cadence of a grid's runs: every 50 steps, or a sixth of a shorter run. A kill
    without warning (SIGKILL, a machine going down) costs a run at most that many steps; a few
    seconds of writing per checkpoint at the grids' sizes."""
    return max(1, min(50, steps // 6))


def run_cells(fn, jobs_args: list, *, jobs: int = 1, on_done=None, fresh: bool = True) -> bool:
    """``fn(args)`` for every ``args`` in ``jobs_args`` in ``jobs`` spawned workers that die with
    this process. ``fresh``: a new worker for every cell, so each cell's peak memory is its own;
    otherwise workers are reused, and a single job (or cell) runs in this process.
    ``on_done(result)`` runs here after each cell, in completion order.

    A cell returns None when its training was interrupted (SIGINT / SIGTERM reached the worker,
    which saved a checkpoint): it gets no record, no further cell starts (those running beside it
    finish), and this returns False (True when every cell finished). The same command resumes the grid."""
    if not fresh and (jobs <= 1 or len(jobs_args) <= 1):
        for args in jobs_args:
            result = fn(args)
            if result is None:
                return False
            if on_done:
                on_done(result)
        return True
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    ctx = multiprocessing.get_context("spawn")
    finished, todo, running = True, list(jobs_args), set()
    with ProcessPoolExecutor(max(1, jobs), mp_context=ctx, initializer=die_with_parent, initargs=(os.getpid(),),
                             max_tasks_per_child=1 if fresh else None) as pool:
        # at most `jobs` cells submitted at a time: the executor moves submitted calls into its own
        # queue, where cancel() no longer reaches them, so an interrupted grid would start them anyway
        while running or (finished and todo):
            while finished and todo and len(running) < max(1, jobs):
                running.add(pool.submit(fn, todo.pop(0)))
            done, running = wait(running, return_when=FIRST_COMPLETED)
            for fut in done:
                result = fut.result()
                if result is None:
                    finished = False  # start no further cell; the running ones end on their own
                elif on_done:
                    on_done(result)
    return finished


def peak_memory_mb(key: str = "VmHWM") -> float:
    """CUDA: peak memory allocated by tensors. CPU: ``key`` (VmHWM peak, VmRSS now) of this process,
    which includes the interpreter, torch and any data preparation."""
    import torch

    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) / 1024 for line in f if line.startswith(key + ":"))


def last_step(run_dir: str | Path) -> int:
    """The last training step logged in ``run_dir/metrics.jsonl`` (0 when there is none yet; a line
    torn by a killed writer is skipped)."""
    try:
        lines = (Path(run_dir) / "metrics.jsonl").read_text().splitlines()
    except OSError:
        return 0
    for line in reversed(lines):
        try:
            return int(json.loads(line)["step"])
        except (ValueError, KeyError, TypeError):
            continue
    return 0


def steps_kept(run_dir: str | Path, since: float) -> int:
    """The steps of a run that stand: those logged in its ``metrics.jsonl``, except that a log not
    written since ``since`` (the grid's start) counts only up to the run's checkpoint. A killed run
    logged steps past its last checkpoint, which its resume cuts from the log and trains again."""
    from longssm.models.checkpoint import CheckpointError, find_checkpoint, read_record

    try:
        if (Path(run_dir) / "metrics.jsonl").stat().st_mtime >= since:
            return last_step(run_dir)
        return min(last_step(run_dir), read_record(find_checkpoint(run_dir))["step"])
    except (OSError, CheckpointError):  # no log yet, or no checkpoint (nothing done stands)
        return 0


@contextmanager
def watch_runs(runs: list[tuple[str | Path, int]], desc: str, *, every: float = 10.0):
    """A progress bar over training runs that workers train without their own bars: ``runs`` is
    (run folder, steps) per run; every ``every`` seconds the bar moves to the steps logged in the
    folders' ``metrics.jsonl`` (the steps a resume keeps count as done: :func:`steps_kept`), so it
    shows the whole grid's steps, rate and time left. Print beside it with ``tqdm.write``."""
    from tqdm.auto import tqdm

    start = time.time()
    done = lambda: sum(min(steps_kept(d, start), steps) for d, steps in runs)  # noqa: E731
    # smoothing=0: the rate since the start, not a moving average of polls that each see 0 or a
    # few logged steps (runs log every 10 steps), so the time left does not jump with every poll
    bar = tqdm(total=sum(steps for _, steps in runs), initial=done(), desc=desc, unit="step",
               dynamic_ncols=True, smoothing=0)
    stop = threading.Event()

    def poll():
        while not stop.wait(every):
            bar.update(max(0, done() - bar.n))

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    try:
        yield bar
    finally:
        stop.set()
        thread.join()
        bar.update(max(0, done() - bar.n))
        bar.close()
