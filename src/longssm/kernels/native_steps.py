"""Whole blocks' decoding steps as one C++ call each: the ``native`` backend's fused steps of a
Mamba block (``kernels/csrc/mamba_step.cpp``) and of an H3 layer (``kernels/csrc/h3_step.cpp``),
built by :mod:`longssm.kernels.native`.

Composed in Python, a block's decoding step is a few matrix-vector products and about twenty
small PyTorch ops, which at batch 1 cost more time than the block's own arithmetic. Each function
here does a whole step in one call, where it applies: CPU, float32 or float64 (complex states in
the matching complex dtype), up to :data:`~longssm.kernels.native_linear.MAX_ROWS` rows, no
gradient to record, no autocast. It returns None elsewhere, and the layer composes its modules
(``SelectiveSSM.step``, ``H3.step``), which is also the reference the fused steps are tested
against.
"""

from __future__ import annotations

import ctypes

import torch

from longssm.kernels.native import entry, i64s, ptr, suffix
from longssm.kernels.native_linear import MAX_ROWS


def _applies(x: torch.Tensor, tensors, complex_ones=()) -> bool:
    """Whether a fused step takes these: x (batch, features) on the CPU in float32/float64 with at
    most MAX_ROWS rows, every other tensor (None: absent) in x's dtype (``complex_ones`` in its
    complex twin) on x's device, no gradient to record, no autocast."""
    if (x.device.type != "cpu" or suffix(x.dtype) is None or x.dim() != 2 or not 0 < x.shape[0] <= MAX_ROWS
            or torch.is_autocast_enabled("cpu")):
        return False
    cdtype = torch.complex128 if x.dtype == torch.float64 else torch.complex64
    present = [(t, x.dtype) for t in tensors if t is not None] + [(t, cdtype) for t in complex_ones if t is not None]
    return (all(t.dtype == want and t.device == x.device for t, want in present)
            and not (torch.is_grad_enabled() and (x.requires_grad or any(t.requires_grad for t, _ in present))))


def _real(t):
    """A complex tensor as contiguous (..., 2) real pairs (None stays None)."""
    return None if t is None else torch.view_as_real(t.resolve_conj().contiguous())


@torch.compiler.disable  # a ctypes call: opaque to dynamo
def mamba_step_native(u_t, in_w, conv_w, conv_b, conv_state, x_w, dt_w, dt_b, A, D, ssm_state, out_w):
    """One decoding step of a Mamba block, or None where the fused step does not apply.

    u_t (batch, d_model); in_w (2 d_inner, d_model); conv_w (d_inner, 1, d_conv); conv_b,
    dt_b, D (d_inner,) (conv_b and D may be None); conv_state (batch, d_inner, d_conv - 1);
    x_w (dt_rank + 2 N, d_inner); dt_w (d_inner, dt_rank); A (d_inner, N), the decays
    ``-exp(A_log)``; ssm_state (batch, d_inner, N) or None (zero); out_w (d_model, d_inner).

    Returns (out (batch, d_model), the new conv state, the new SSM state)."""
    if not _applies(u_t, (in_w, conv_w, conv_b, conv_state, x_w, dt_w, dt_b, A, D, ssm_state, out_w)):
        return None
    (batch, d_model), (d_inner, d_conv), N = u_t.shape, (conv_w.shape[0], conv_w.shape[-1]), A.shape[1]
    dt_rank = dt_w.shape[1]
    u_t, conv_w, conv_state, x_w, dt_w, dt_b, A, in_w, out_w = (
        t.contiguous() for t in (u_t, conv_w, conv_state, x_w, dt_w, dt_b, A, in_w, out_w))
    conv_b, D, ssm_state = (None if t is None else t.contiguous() for t in (conv_b, D, ssm_state))
    out = u_t.new_empty(batch, d_model)
    new_conv, new_ssm = u_t.new_empty(batch, d_inner, d_conv - 1), u_t.new_empty(batch, d_inner, N)
    entry("mamba_step", f"longssm_mamba_step_{suffix(u_t.dtype)}")(
        i64s((batch, d_model, d_inner, d_conv, dt_rank, N)), ptr(u_t), ptr(in_w), ptr(conv_w), ptr(conv_b),
        ptr(conv_state), ptr(x_w), ptr(dt_w), ptr(dt_b), ptr(A), ptr(D), ptr(ssm_state), ptr(out_w), ptr(new_conv),
        ptr(new_ssm), ptr(out), ctypes.c_int(torch.get_num_threads()))
    return out, new_conv, new_ssm


@torch.compiler.disable  # a ctypes call: opaque to dynamo
def h3_step_native(x_t, in_w, in_b, K, shift_D, window, dA, dB, C, D, ssm_state, out_w, out_b):
    """One decoding step of an H3 layer with one channel per head and all of Q, the shift SSM and
    the diagonal SSM, or None where the fused step does not apply.

    x_t (batch, d); in_w (3d, d) and in_b (3d,): q, k, v; K (d, S), the shift SSM's kernel;
    shift_D, D, out_b (d,); window (batch, d, S) or None (zero), newest first; dA, dB, C (d, N)
    complex, C doubled for the conjugate modes; ssm_state (batch, d, N) complex or None (zero);
    out_w (d, d).

    Returns (out (batch, d), the new window, the new SSM state)."""
    if not _applies(x_t, (in_w, in_b, K, shift_D, window, D, out_w, out_b), (dA, dB, C, ssm_state)):
        return None
    (batch, d), (S, N) = x_t.shape, (K.shape[1], dA.shape[1])
    x_t, in_w, in_b, K, shift_D, D, out_w, out_b = (
        t.contiguous() for t in (x_t, in_w, in_b, K, shift_D, D, out_w, out_b))
    window = None if window is None else window.contiguous()
    dA, dB, C, ssm_state = (_real(t) for t in (dA, dB, C, ssm_state))
    out, new_window = x_t.new_empty(batch, d), x_t.new_empty(batch, d, S)
    new_state = x_t.new_empty(batch, d, N, 2)
    entry("h3_step", f"longssm_h3_step_{suffix(x_t.dtype)}")(
        i64s((batch, d, S, N)), ptr(x_t), ptr(in_w), ptr(in_b), ptr(K), ptr(shift_D), ptr(window), ptr(dA), ptr(dB),
        ptr(C), ptr(D), ptr(ssm_state), ptr(out_w), ptr(out_b), ptr(new_window), ptr(new_state), ptr(out),
        ctypes.c_int(torch.get_num_threads()))
    return out, new_window, torch.view_as_complex(new_state)
