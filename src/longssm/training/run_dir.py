"""Run folders: the name of a new one, the guard against writing over a run by accident, and the
lock that keeps a second process off a folder being trained."""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import socket
import time
from pathlib import Path

from longssm.models import checkpoint as ckpt
from longssm.training.config import RunConfig
from longssm.training.distributed import Distributed


@contextlib.contextmanager
def run_lock(out: Path, log=print):
    """Rank 0 holds an exclusive lock on ``out/.lock`` while it trains, so a second process on the
    same run folder (the same command in two terminals, two grids) is refused at once instead of
    interleaving its checkpoints and metrics with the first one's. The kernel drops the lock when
    the process ends, however it ends. A file system without locks is said, not fatal."""
    if Distributed.from_env().rank != 0:
        yield
        return
    out.mkdir(parents=True, exist_ok=True)
    fd = os.open(out / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 200).decode(errors="replace").strip()
            raise ValueError(f"{out} is being trained by another process ({holder or 'unknown'}); wait for it "
                             f"to finish or stop it first") from None
        except OSError as e:  # e.g. ENOLCK on a network file system without lock support
            log(f"warning: cannot lock {out / '.lock'} ({e}); nothing stops a second process on this run folder")
        else:
            os.ftruncate(fd, 0)
            os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode())
        yield
    finally:
        os.close(fd)


def new_run_dir(run: RunConfig) -> str:
    """runs/<preset or 'run'>-<date>-<time>, the same in every process (rank 0 names it)."""
    name = f"runs/{run.model.get('preset', 'run')}-{time.strftime('%Y%m%d-%H%M%S')}"
    return Distributed.from_env().broadcast(name)


def check_run_dir(out: Path, resume: bool | str, overwrite: bool) -> None:
    if resume is True and not ckpt.has_checkpoint(out):
        raise ValueError(f"--resume: {out} holds no checkpoint to continue from")
    if resume:
        return
    traces = [n for n in ("checkpoints", "metrics.jsonl") if (out / n).exists()]
    if traces and not overwrite:
        raise ValueError(f"{out} already holds a run ({', '.join(traces)}); pass --resume to continue it or "
                         f"--overwrite to replace it")
    if traces and Distributed.from_env().rank == 0:
        shutil.rmtree(out / "checkpoints", ignore_errors=True)
        (out / "metrics.jsonl").unlink(missing_ok=True)
