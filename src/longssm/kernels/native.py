"""Build and load the package's C++ kernels (``kernels/csrc``) on first use: the ``native`` backend.

Nothing is compiled at install or import time (STYLE.md habit 3). The first call of a native op
compiles its source with the system C++ compiler (``$CXX``, else ``g++``, else ``c++``; about 2 s),
for this machine's vector unit (``-march=native``) and with OpenMP, into a shared library cached
under ``$LONGSSM_CACHE`` (default ``~/.cache/longssm``). The library is keyed by a hash of the
source (with the headers it shares), the flags, the compiler's version and the CPU's feature flags, so an edited source, another
compiler or a different CPU (a shared home on a mixed cluster) builds its own copy; builds are
written to a temporary name and renamed, so concurrent processes never load a half-written file.

The library is loaded with :mod:`ctypes`: plain C entry points over raw pointers, no torch headers
(which would make a build take a minute). Its OpenMP runtime is the one torch already loaded
(same ``libgomp.so.1`` soname), as inductor's compiled kernels do.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

import torch  # first: its libgomp is then the OpenMP runtime the kernel libraries bind to

CSRC = Path(__file__).parent / "csrc"
FLAGS = ("-O3", "-march=native", "-fopenmp", "-fno-math-errno", "-fno-trapping-math", "-std=c++20",
         "-shared", "-fPIC")


class NativeBuildError(RuntimeError):
    """The C++ kernels could not be built here (no compiler, or it failed)."""


def compiler() -> str:
    """The C++ compiler to use: ``$CXX`` or the first of g++ / c++ on the PATH."""
    for name in (os.environ.get("CXX"), "g++", "c++"):
        if name and shutil.which(name):
            return shutil.which(name)
    raise NativeBuildError("the native backend needs a C++ compiler with OpenMP (g++ or $CXX); none was found "
                           "on PATH. Install one (e.g. apt install g++) or use backend 'auto'")


def cache_dir() -> Path:
    return Path(os.environ.get("LONGSSM_CACHE", Path.home() / ".cache" / "longssm")) / "native"


def _cpu_flags() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next((line for line in f if line.startswith(("flags", "Features"))), "")
    except OSError:
        return platform.processor() or platform.machine()


def _key(source: bytes, cxx: str) -> str:
    version = subprocess.run([cxx, "--version"], capture_output=True, text=True).stdout
    h = hashlib.sha256(source)
    for part in (" ".join(FLAGS), version, _cpu_flags(), platform.machine()):
        h.update(part.encode())
    return h.hexdigest()[:16]


@functools.cache
def library(name: str) -> ctypes.CDLL:
    """The compiled ``csrc/<name>.cpp``, built on the first call in any process and cached (keyed
    by the source and every header in ``csrc``, which the sources share)."""
    source_path = CSRC / f"{name}.cpp"
    source = source_path.read_bytes() + b"".join(h.read_bytes() for h in sorted(CSRC.glob("*.h")))
    cxx = compiler()
    out = cache_dir() / f"{name}-{_key(source, cxx)}.so"
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(suffix=".so", dir=out.parent)
        os.close(fd)
        cmd = [cxx, *FLAGS, str(source_path), "-o", tmp]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            os.unlink(tmp)
            raise NativeBuildError(f"building {source_path.name} failed ({' '.join(cmd)}):\n{done.stderr[-2000:]}")
        os.replace(tmp, out)
    return ctypes.CDLL(str(out))


#: the suffix of a C entry point per dtype (the kernels are templates instantiated for these two)
DTYPE_SUFFIX = {torch.float32: "f32", torch.float64: "f64"}


def suffix(dtype: torch.dtype) -> str | None:
    """``f32`` / ``f64`` for float32 / float64, None for a dtype the kernels do not take."""
    return DTYPE_SUFFIX.get(dtype)


def ptr(t) -> ctypes.c_void_p:
    """A tensor's data pointer for a C argument (None: a null pointer)."""
    return ctypes.c_void_p(t.data_ptr() if t is not None else None)


def i64s(values) -> ctypes.Array:
    """A C array of int64 (shapes, strides) for a pointer argument."""
    values = list(values)
    return (ctypes.c_int64 * len(values))(*values)


def entry(library_name: str, symbol: str, restype=None):
    """A C function of a native library (built on first use), returning ``restype`` (void)."""
    fn = getattr(library(library_name), symbol)
    fn.restype = restype
    return fn
