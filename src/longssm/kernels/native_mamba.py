"""The Mamba block's decoding step as one C++ call: the ``native`` backend's fused block step
(source: ``kernels/csrc/mamba_step.cpp``, built by :mod:`longssm.kernels.native`).

Composed in Python, a Mamba block's decoding step is four matrix-vector products, the
convolution's window, the selective step and the gates: about twenty small PyTorch ops and
four ctypes calls per layer, which at batch 1 cost more time than the block's own arithmetic.
:func:`mamba_step_native` does the whole step in one call, where it applies: CPU, float32 or
float64, up to :data:`~longssm.kernels.native_linear.MAX_ROWS` rows, no gradient to record, no
autocast. It
returns None elsewhere, and the layer composes its modules (``SelectiveSSM.step``), which is
also the reference the fused step is tested against.
"""

from __future__ import annotations

import ctypes

import torch

from longssm.kernels.native import entry, i64s, ptr, suffix
from longssm.kernels.native_linear import MAX_ROWS


@torch.compiler.disable  # a ctypes call: opaque to dynamo
def mamba_step_native(u_t, in_w, conv_w, conv_b, conv_state, x_w, dt_w, dt_b, A, D, ssm_state, out_w):
    """One decoding step of a Mamba block, or None where the fused step does not apply.

    u_t (batch, d_model); in_w (2 d_inner, d_model); conv_w (d_inner, 1, d_conv); conv_b,
    dt_b, D (d_inner,) (conv_b and D may be None); conv_state (batch, d_inner, d_conv - 1);
    x_w (dt_rank + 2 N, d_inner); dt_w (d_inner, dt_rank); A (d_inner, N), the decays
    ``-exp(A_log)``; ssm_state (batch, d_inner, N) or None (zero); out_w (d_model, d_inner).

    Returns (out (batch, d_model), the new conv state, the new SSM state)."""
    tensors = (u_t, in_w, conv_w, conv_b, conv_state, x_w, dt_w, dt_b, A, D, ssm_state, out_w)
    present = [t for t in tensors if t is not None]
    if (u_t.device.type != "cpu" or suffix(u_t.dtype) is None or u_t.dim() != 2 or u_t.shape[0] > MAX_ROWS
            or u_t.shape[0] == 0 or any(t.dtype != u_t.dtype or t.device != u_t.device for t in present)
            or (torch.is_grad_enabled() and any(t.requires_grad for t in present))
            or torch.is_autocast_enabled("cpu")):
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
