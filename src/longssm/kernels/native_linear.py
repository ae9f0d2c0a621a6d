"""The linear layer: PyTorch's (``auto``, ``ref``, ``compile``) and the ``native`` backend's, which
decodes faster on CPU (source: ``kernels/csrc/linear.cpp``, built by :mod:`longssm.kernels.native`).

Decoding one token per row multiplies a few rows by every weight matrix: the work is reading the
weights once (and with tens of rows, batched decoding or a short prompt, the multiply-adds). The
native kernel streams each weight row once and dots it with every input row from cache; it
applies to up to :data:`MAX_ROWS` rows on CPU in float32/float64 when no gradient is needed
(decoding, short prompts, evaluation), and every other call (training, long prompts, GPUs, half
precision) is ``F.linear``. Results agree with ``F.linear`` to rounding (another summation order).
"""

from __future__ import annotations

import ctypes

import torch
import torch.nn.functional as F

from longssm.kernels.native import entry, ptr, suffix

#: rows (tokens) up to which the native kernel runs: beyond, the weights are reused enough for
#: PyTorch's matrix products to be the faster path. On the development CPU, over a 130M model's
#: projections streaming from memory (``longssm bench kernels --contenders linear-native``), the
#: kernel is 2.6x F.linear at 1 row, 2.1x at 8, 1.6x at 32, 1.3x at 128 and level at 512
MAX_ROWS = 128


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """x (..., in) -> (..., out): ``F.linear``, the default backends' linear layer."""
    return F.linear(x, weight, bias)


def _applies(x, weight, bias) -> bool:
    return (x.device.type == "cpu" and suffix(x.dtype) is not None and weight.dtype == x.dtype
            and (bias is None or (bias.dtype == x.dtype and bias.is_contiguous()))
            and x.numel() <= MAX_ROWS * x.shape[-1] and x.numel() > 0 and weight.is_contiguous()
            and not (torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad
                                                  or (bias is not None and bias.requires_grad))))


@torch.compiler.disable  # a ctypes call: opaque to dynamo
def linear_native(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """x (..., in) -> (..., out) through the native kernel where it applies (see the module), else
    ``F.linear``."""
    if not _applies(x, weight, bias):
        return F.linear(x, weight, bias)
    if x.shape[-1] != weight.shape[1]:
        raise ValueError(f"linear: x has {x.shape[-1]} features, the weight takes {weight.shape[1]}")
    rows = x.reshape(-1, x.shape[-1])
    if rows.stride(-1) != 1:
        rows = rows.contiguous()
    y = x.new_empty(rows.shape[0], weight.shape[0])
    entry("linear", f"longssm_gemv_{suffix(x.dtype)}")(
        ptr(weight), ptr(rows), ctypes.c_int64(rows.stride(0)), ptr(bias), ptr(y), ctypes.c_int64(rows.shape[0]),
        ctypes.c_int64(weight.shape[0]), ctypes.c_int64(weight.shape[1]), ctypes.c_int(torch.get_num_threads()))
    return y.view(*x.shape[:-1], weight.shape[0])
