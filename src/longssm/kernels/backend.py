"""Which implementation of each sequence op runs: the backend switch (STYLE.md habit 3).

Every stateful sequence op has a fast path and a ``*_ref`` twin with the same signature
``op(..., initial_state=None, return_state=False) -> (y, state | None)``; ``linear`` (the
projections) is the one stateless op, ``F.linear`` except in the native backend,
``selective_scan_step`` a single-position op (decoding), and ``mamba_step`` and ``h3_step`` a
whole Mamba block's and H3 layer's decoding step, which only the native backend has (None
elsewhere: the layer composes its modules). A backend names which of them layers call:

* ``auto``: the fast pure-PyTorch path (chunked FFT convolution, cache-blocked scans); the
  environment variable ``LONGSSM_BACKEND`` (any backend below) overrides it, so a whole run can
  be switched to the reference without touching its config;
* ``ref``: the reference twins (slow, obvious loops): for checking, never for training;
* ``compile``: ``torch.compile``d kernels where they exist (the selective scan:
  :mod:`longssm.kernels.compiled_scan`), the ``auto`` path for the other ops. Opt-in: the first
  call per shape compiles (tens of seconds) and CPU needs a C++ compiler;
* ``native``: the package's own C++ kernels, built on first use by the system compiler
  (:mod:`longssm.kernels.native`; CPU, float32/float64) where they exist: the selective scan, one
  fused pass forward and one backward, and its decoding step as one call
  (:mod:`longssm.kernels.native_scan`), a Mamba block's and an H3 layer's whole decoding
  step as one call (:mod:`longssm.kernels.native_steps`), and the linear layers of decoding, a matrix-vector
  product at memory speed (:mod:`longssm.kernels.native_linear`); the
  ``auto`` path for the other ops. Opt-in: the first call in a machine builds them (a few seconds,
  then cached).

A backend is one more column of :data:`OPS` (room is left for ``triton``).
The backend a process resolves to is logged once (logger ``longssm``).
"""

from __future__ import annotations

import logging
import os
from typing import Callable

from longssm.kernels.compiled_scan import selective_scan_compiled
from longssm.kernels.diagonal import ssm_conv, ssm_conv_ref
from longssm.kernels.native_linear import linear, linear_native
from longssm.kernels.native_steps import h3_step_native, mamba_step_native
from longssm.kernels.native_scan import selective_scan_native, selective_scan_step_native
from longssm.kernels.recurrence import linear_scan, linear_scan_ref
from longssm.kernels.selective_scan import selective_scan, selective_scan_ref, selective_scan_step
from longssm.kernels.shift import shift_conv, shift_conv_ref

BACKENDS = ("auto", "ref", "compile", "native")
ENV = "LONGSSM_BACKEND"

#: op name -> implementation per concrete backend.
OPS: dict[str, dict[str, Callable | None]] = {
    "ssm_conv": {"auto": ssm_conv, "ref": ssm_conv_ref, "compile": ssm_conv, "native": ssm_conv},
    "shift_conv": {"auto": shift_conv, "ref": shift_conv_ref, "compile": shift_conv, "native": shift_conv},
    "selective_scan": {"auto": selective_scan, "ref": selective_scan_ref, "compile": selective_scan_compiled,
                       "native": selective_scan_native},
    "selective_scan_step": {"auto": selective_scan_step, "ref": selective_scan_step, "compile": selective_scan_step,
                            "native": selective_scan_step_native},
    "linear_scan": {"auto": linear_scan, "ref": linear_scan_ref, "compile": linear_scan, "native": linear_scan},
    "linear": {"auto": linear, "ref": linear, "compile": linear, "native": linear_native},
    # a whole block's decoding step, where a backend has one fused (None: the layer composes its
    # modules, which is the reference the fused step is tested against)
    "mamba_step": {"auto": None, "ref": None, "compile": None, "native": mamba_step_native},
    "h3_step": {"auto": None, "ref": None, "compile": None, "native": h3_step_native},
}

_logged: set[str] = set()
log = logging.getLogger("longssm")


def check_backend(name: str) -> str:
    if name not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {name!r}")
    return name


def resolve(name: str = "auto") -> str:
    """The concrete backend for a configured one: ``auto`` defers to ``$LONGSSM_BACKEND``."""
    check_backend(name)
    if name == "auto":
        env = os.environ.get(ENV, "auto")
        if env not in BACKENDS:
            raise ValueError(f"${ENV} must be one of {BACKENDS}, got {env!r}")
        name = env
    if name not in _logged:
        _logged.add(name)
        log.info("longssm kernel backend: %s", name)
    return name


def get_op(op: str, backend: str = "auto") -> Callable:
    """The implementation of ``op`` for ``backend`` (see :data:`OPS`)."""
    if op not in OPS:
        raise ValueError(f"unknown op {op!r}; known: {sorted(OPS)}")
    return OPS[op][resolve(backend)]
