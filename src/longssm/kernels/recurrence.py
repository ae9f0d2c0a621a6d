"""The diagonal linear recurrence ``h_t = a_t * h_{t-1} + b_t``: the primitive under every
recurrent SSM evaluation (the selective scan, Mamba eq. 2a; S5's parallel form, Smith et al. 2023
section 2.2, whose associative operator is exactly this recurrence).

Shapes: time on axis 1. ``b`` (batch, L, *dims) real or complex; ``a`` broadcastable to ``b``
(per-step ``a_t`` for time-varying or input-dependent steps, or (*dims) for a fixed transition);
``initial_state`` (batch, *dims) or None (zero). Returns every ``h`` (batch, L, *dims) and, with
``return_state``, the last one.

:func:`linear_scan` runs the recurrence as one in-place fused multiply-add per position
(:func:`scan_`), with a hand-written backward that is the same recurrence run in reverse with
``conj(a)`` shifted by one step (PyTorch's convention for complex gradients):

    G_t = g_t + conj(a_{t+1}) G_{t+1};  grad b_t = G_t;  grad a_t = G_t conj(h_{t-1});
    grad h_0 = conj(a_0) G_0.

:func:`linear_scan_ref` is the plain out-of-place loop under autograd.
"""

from __future__ import annotations

import torch

from longssm.kernels.checks import check_float, check_shape


def scan_(a_t, b_t, x0, reverse: bool) -> None:
    """In place over position lists: b_t <- a_t * b_prev + b_t, b_prev the previous position (next
    if ``reverse``), starting from x0 (None: zero). a_t, b_t: sequences of equally shaped views.
    One fused multiply-add per position on a slice that stays in cache."""
    order = range(len(b_t) - 1, -1, -1) if reverse else range(len(b_t))
    prev = x0
    for t in order:
        if prev is not None:
            b_t[t].addcmul_(a_t[t], prev)
        prev = b_t[t]


def _check(a, b, initial_state):
    check_float("b", b, allow_complex=True)
    check_float("a", a, allow_complex=True)
    if b.dim() < 2 or b.shape[1] == 0:
        raise ValueError(f"b must have shape (batch, seq_len >= 1, ...), got {tuple(b.shape)}")
    try:
        torch.broadcast_shapes(a.shape, b.shape)
    except RuntimeError:
        raise ValueError(f"a {tuple(a.shape)} does not broadcast to b {tuple(b.shape)}") from None
    if initial_state is not None:
        check_shape("initial_state", initial_state, (b.shape[0], *b.shape[2:]))


def _dtype(a, b, initial_state):
    dtype = torch.promote_types(a.dtype, b.dtype)
    return dtype if initial_state is None else torch.promote_types(dtype, initial_state.dtype)


class _LinearScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a, b, x0):
        a_full = a.expand(b.shape)
        h = b.clone()
        scan_(a_full.unbind(1), h.unbind(1), x0, reverse=False)
        ctx.save_for_backward(a, h, x0)
        ctx.set_materialize_grads(False)
        return h

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g):
        a, h, x0 = ctx.saved_tensors
        if g is None:
            return None, None, None
        a_conj = a.expand(h.shape).conj()
        G = g.clone()
        # G_t += conj(a_{t+1}) G_{t+1}: coefficients shifted by one position.
        scan_(a_conj.unbind(1)[1:], G.unbind(1)[:-1], G[:, -1], reverse=True)
        g_a = g_x0 = None
        if ctx.needs_input_grad[0]:
            prev = torch.cat([(x0 if x0 is not None else torch.zeros_like(h[:, 0]))[:, None], h[:, :-1]], 1)
            g_a = (G * prev.conj()).sum_to_size(a.shape)
        if ctx.needs_input_grad[2]:
            g_x0 = a_conj[:, 0] * G[:, 0]
        return g_a, G if ctx.needs_input_grad[1] else None, g_x0


def linear_scan(a: torch.Tensor, b: torch.Tensor, initial_state: torch.Tensor | None = None,
                return_state: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """All states of ``h_t = a_t h_{t-1} + b_t``: (h (batch, L, *dims), h_L or None)."""
    _check(a, b, initial_state)
    dtype = _dtype(a, b, initial_state)
    x0 = None if initial_state is None else initial_state.to(dtype)
    h = _LinearScan.apply(a.to(dtype), b.to(dtype), x0)
    return h, (h[:, -1] if return_state else None)


def linear_scan_ref(a: torch.Tensor, b: torch.Tensor, initial_state: torch.Tensor | None = None,
                    return_state: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Twin of :func:`linear_scan`: the recurrence one position at a time, out of place."""
    _check(a, b, initial_state)
    dtype = _dtype(a, b, initial_state)
    a = a.to(dtype).expand(b.shape)
    h = None if initial_state is None else initial_state.to(dtype)
    hs = []
    for a_t, b_t in zip(a.unbind(1), b.to(dtype).unbind(1)):
        h = b_t if h is None else a_t * h + b_t
        hs.append(h)
    return torch.stack(hs, 1), (h if return_state else None)
