"""Pure tensor functions (no nn.Module, no config). Each stateful sequence op has a ``*_ref`` twin
with the same signature, ``op(..., initial_state=None, return_state=False) -> (y, state | None)``;
:mod:`longssm.kernels.backend` chooses between them."""

from longssm.kernels.backend import BACKENDS, get_op
from longssm.kernels.diagonal import (
    discretize, s4d_init_A, s4d_init_log_dt, ssm_conv, ssm_conv_ref, ssm_kernel, ssm_step,
)
from longssm.kernels.fftconv import fftconv, fftconv_ref, next_fast_len
from longssm.kernels.recurrence import linear_scan, linear_scan_ref
from longssm.kernels.selective_scan import selective_scan, selective_scan_ref, selective_scan_step
from longssm.kernels.shift import shift_conv, shift_conv_ref, shift_kernel, shift_step
from longssm.kernels.vandermonde import (
    vandermonde, vandermonde_ref, vandermonde_transpose, vandermonde_transpose_ref,
)

__all__ = [
    "BACKENDS", "get_op", "discretize", "s4d_init_A", "s4d_init_log_dt", "ssm_conv", "ssm_conv_ref",
    "ssm_kernel", "ssm_step", "fftconv", "fftconv_ref", "next_fast_len", "linear_scan",
    "linear_scan_ref", "selective_scan", "selective_scan_ref", "selective_scan_step", "shift_conv",
    "shift_conv_ref", "shift_kernel", "shift_step", "vandermonde", "vandermonde_ref",
    "vandermonde_transpose", "vandermonde_transpose_ref",
]
