"""The selective scan as one fused C++ pass forward and one backward: the ``native`` backend's
``selective_scan`` (source: ``kernels/csrc/selective_scan.cpp``, built by :mod:`longssm.kernels.native`).

Same arguments, results and semantics as :func:`longssm.kernels.selective_scan.selective_scan`
(Mamba, Gu & Dao 2023, Algorithm 2). The kernel reads delta, u, B, C once forward and once
backward (plus g_y) and writes y, or the gradients, once: no (batch, L, D, N) tensor and no
per-position dispatch. Only the state entering every 32 positions is kept for backward, which
recomputes each chunk's states in cache (as mamba_ssm's CUDA kernel). The softplus of delta, the
skip term D u and the gate silu(z) are PyTorch ops around it.

float32 and float64 on CPU. In float32 the decays use a polynomial ``exp`` (max error about
2 ulp, as libm's) and decays below exp(-87) are 1.6e-38 instead of 0. Gradients of B, C and A are
summed over channels per thread and then over threads in a fixed order, so results are
bit-identical from run to run for a given ``torch.get_num_threads()``.
"""

from __future__ import annotations

import ctypes

import torch

from longssm.kernels.native import entry, i64s, ptr, suffix
from longssm.kernels.selective_scan import _check, _check_step, _finish, _prepare_delta, selective_scan_step

def _entry(kind: str, dtype: torch.dtype):
    return entry("selective_scan", f"longssm_scan_{kind}_{suffix(dtype)}")


def _chunk() -> int:
    """Positions per checkpointed chunk, as the compiled kernel defines them (``T``)."""
    return entry("selective_scan", "longssm_scan_chunk", ctypes.c_int)()


def _strides(*tensors):
    return i64s(s for t in tensors for s in t.stride())


class _NativeScan(torch.autograd.Function):
    """dt (after softplus), u (batch, D, L); A (D, N); B, C (batch, N, L); x0 (batch, D, N) or None."""

    @staticmethod
    def forward(ctx, dt, u, A, B, C, x0):
        batch, Dm, L = u.shape
        N = A.shape[1]
        A, x0 = A.contiguous(), None if x0 is None else x0.contiguous()
        y = u.new_empty(batch, Dm, L)
        last = u.new_empty(batch, Dm, N)
        ck = u.new_empty(batch, -(-L // _chunk()), Dm, N)
        shape = i64s((batch, Dm, L, N))
        threads = torch.get_num_threads()
        _entry("fwd", u.dtype)(shape, _strides(dt, u, B, C, y), ptr(dt), ptr(u), ptr(A), ptr(B), ptr(C),
                               ptr(x0), ptr(y), ptr(last), ptr(ck), ctypes.c_int(threads))
        ctx.save_for_backward(dt, u, A, B, C, ck)
        ctx.has_x0 = x0 is not None
        ctx.set_materialize_grads(False)
        return y, last

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g_y, g_last):
        dt, u, A, B, C, ck = ctx.saved_tensors
        batch, Dm, L = u.shape
        N = A.shape[1]
        threads = torch.get_num_threads()
        g_y = u.new_zeros(u.shape) if g_y is None else g_y
        g_last = None if g_last is None else g_last.contiguous()
        g_dt, g_u = torch.empty_like(u, memory_format=torch.contiguous_format), torch.empty_like(u)
        g_A = A.new_zeros(threads, Dm, N)  # one slot per thread, summed below in a fixed order
        g_B, g_C = B.new_zeros(threads, batch, N, L), C.new_zeros(threads, batch, N, L)
        g_x0 = u.new_empty(batch, Dm, N)
        _entry("bwd", u.dtype)(
            i64s((batch, Dm, L, N)), _strides(dt, u, B, C, g_y, g_dt, g_u), ptr(dt), ptr(u), ptr(A), ptr(B),
            ptr(C), ptr(ck), ptr(g_y), ptr(g_last), ptr(g_dt), ptr(g_u), ptr(g_A), ptr(g_B), ptr(g_C),
            ptr(g_x0), ctypes.c_int(threads))
        return g_dt, g_u, g_A.sum(0), g_B.sum(0), g_C.sum(0), g_x0 if ctx.has_x0 else None


def _check_native(u):
    if u.device.type != "cpu":
        raise ValueError(f"the native backend's selective scan runs on CPU; got a tensor on {u.device} "
                         "(use backend 'auto' on GPU)")
    if suffix(u.dtype) is None:
        raise TypeError(f"the native backend's selective scan takes float32 or float64, got {u.dtype}")


@torch.compiler.disable  # a ctypes call: opaque to dynamo
def selective_scan_native(
    u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
    initial_state=None, return_state=False, segment_size=None,
):
    """:func:`~longssm.kernels.selective_scan.selective_scan` through the fused C++ kernel;
    ``segment_size`` is accepted for an identical signature and unused.

    Returns (y (batch, D, L), the last state (batch, D, N) or None without ``return_state``)."""
    _check(u, delta, A, B, C, D, z, delta_bias, initial_state)
    _check_native(u)
    dtype = u.dtype
    if any(t.dtype != dtype for t in (delta, A, B, C) + ((initial_state,) if initial_state is not None else ())):
        raise TypeError("the native backend's selective scan needs u, delta, A, B, C (and initial_state) in one "
                        f"dtype; got {[t.dtype for t in (u, delta, A, B, C)]}")
    delta = _prepare_delta(delta, delta_bias, delta_softplus)
    y, last = _NativeScan.apply(delta, u, A, B, C, initial_state)
    y = _finish(y, u, D, z)
    return y, (last if return_state else None)


def _step_fits(u_t, delta_t, A, B_t, C_t, state, D, z_t, delta_bias) -> bool:
    """Whether one step's tensors have the shapes of :func:`_check_step`, u_t's dtype and the CPU:
    the kernel's inputs, checked in a few microseconds (a token calls this once per layer)."""
    if u_t.dim() != 2 or A.dim() != 2 or u_t.device.type != "cpu" or suffix(u_t.dtype) is None:
        return False
    (batch, Dm), N = u_t.shape, A.shape[1]
    want = ((batch, Dm), (Dm, N), (batch, N), (batch, N), (batch, Dm, N), (Dm,), (batch, Dm), (Dm,))
    return all(t is None or (t.shape == w and t.dtype == u_t.dtype and t.device == u_t.device)
               for t, w in zip((delta_t, A, B_t, C_t, state, D, z_t, delta_bias), want))


@torch.compiler.disable  # a ctypes call: opaque to dynamo
def selective_scan_step_native(u_t, delta_t, A, B_t, C_t, state, D=None, z_t=None, delta_bias=None,
                               delta_softplus=False):
    """:func:`~longssm.kernels.selective_scan.selective_scan_step` with the state update, readout,
    skip and gate as one C++ call: the decoding step. Where autograd records (an input that
    requires grad), it is the PyTorch step, which has a backward.

    Returns (y_t (batch, D), the new state (batch, D, N))."""
    args = (u_t, delta_t, A, B_t, C_t, state, D, z_t, delta_bias)
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in args):
        return selective_scan_step(*args, delta_softplus)
    if not _step_fits(*args):
        _check_step(*args)
        _check_native(u_t)
        raise TypeError("the native backend's selective step needs all its tensors in one dtype on the CPU; got "
                        f"{[None if t is None else f'{t.dtype} on {t.device}' for t in args]}")
    delta = _prepare_delta(delta_t, delta_bias, delta_softplus).contiguous()
    u_t, A, B_t, C_t, state, D, z_t = (None if t is None else t.contiguous() for t in (u_t, A, B_t, C_t, state, D, z_t))
    (batch, Dm), N = u_t.shape, A.shape[1]
    y, new = u_t.new_empty(batch, Dm), u_t.new_empty(batch, Dm, N)
    _entry("step", u_t.dtype)(i64s((batch, Dm, N)), ptr(u_t), ptr(delta), ptr(A), ptr(B_t), ptr(C_t), ptr(D),
                              ptr(z_t), ptr(state), ptr(new), ptr(y), ctypes.c_int(torch.get_num_threads()))
    return y, new
