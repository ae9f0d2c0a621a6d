"""Worker processes of the parallel grids die with the process that started them: a grid whose
parent is killed (SIGKILL, a scheduler's job end) leaves no cells running on their own."""

from __future__ import annotations

import ctypes
import signal
import sys

_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def die_with_parent() -> None:
    """Ask the kernel to send this process SIGTERM when its parent exits (Linux; elsewhere the
    workers end when their task queue breaks)."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
