"""The shift SSM of H3 (H3 paper section 3.1): A is the N x N down-shift matrix, so the state
``x_t = A x_{t-1} + B u_t`` holds a weighted window of the last N inputs, and ``y_t = C x_t + D u_t``.

Its kernel is ``K[l] = C A^l B = sum_{i >= l} C_i B_{i-l}`` (length N); with B = e1 (H3's init) it
is simply C, a learned length-N causal filter. The state we carry is the raw window of the last N
inputs, ``window[..., m] = u_{t-m}``: it equals the SSM state x when B = e1 and determines it for any
B (``x_i = sum_{m <= i} B_{i-m} window_m``), while making chunked evaluation a plain convolution over
``[window, u]``. Shapes: u (batch, H, L); B, C, K (H, N); window (batch, H, N).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from longssm.kernels.checks import check_float, check_shape
from longssm.kernels.fftconv import fftconv


def shift_kernel(B: torch.Tensor, C: torch.Tensor) -> torch.Tensor:
    """K[h, l] = sum_m C[h, l + m] * B[h, m]: the impulse response of the shift SSM, (H, N)."""
    H, N = C.shape
    return F.conv1d(F.pad(C, (0, N - 1))[None], B[:, None, :], groups=H)[0]


def _check(u, K, D, window):
    check_float("u", u)
    if u.dim() != 3 or u.shape[-1] == 0:
        raise ValueError(f"u must have shape (batch, H, seq_len >= 1), got {tuple(u.shape)}")
    check_shape("K", K, (u.shape[1], None))
    if D is not None:
        check_shape("D", D, (u.shape[1],))
    if window is not None:
        check_shape("state", window, (u.shape[0], u.shape[1], K.shape[1]))


def shift_conv(u, K, D=None, initial_state=None, return_state=False):
    """Causal length-N convolution of u with K continuing from the window ``initial_state`` (None:
    zeros).

    Returns y (batch, H, L) and the new window (batch, H, N) of the last N inputs, newest first
    (None with ``return_state=False``).
    """
    _check(u, K, D, initial_state)
    window = initial_state
    N, L = K.shape[1], u.shape[-1]
    history = u if window is None else torch.cat([window[..., : N - 1].flip(-1), u], dim=-1)
    n_hist = history.shape[-1] - L  # inputs before u[0] that the first outputs need
    y = fftconv(history, K[:, : min(N, history.shape[-1])])[..., n_hist:]
    if D is not None:
        y = y + D[:, None] * u
    if not return_state:
        return y, None
    tail = history[..., -N:].flip(-1)
    new_window = F.pad(tail, (0, N - tail.shape[-1]))  # fewer than N inputs seen: zeros beyond
    return y, new_window


def shift_conv_ref(u, K, D=None, initial_state=None, return_state=False):
    """Twin of :func:`shift_conv`: the window recurrence, one token at a time."""
    _check(u, K, D, initial_state)
    window, ys = initial_state, []
    for u_t in u.unbind(-1):
        y_t, window = shift_step(u_t, window, K, D)
        ys.append(y_t)
    return torch.stack(ys, dim=-1), (window if return_state else None)


def shift_step(u_t, window, K, D=None):
    """One token: u_t (batch, H), window (batch, H, N) or None -> (y_t, new_window)."""
    if window is None:
        window = u_t.new_zeros(*u_t.shape, K.shape[1])
    window = torch.cat([u_t[..., None], window[..., :-1]], dim=-1)
    y = (window * K).sum(-1)
    if D is not None:
        y = y + D * u_t
    return y, window
