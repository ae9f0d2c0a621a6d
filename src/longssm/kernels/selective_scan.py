"""Selective scan (Mamba / S6, Gu & Dao 2023, Algorithm 2) with the argument semantics of
``mamba_ssm``'s ``selective_scan_ref``, plus an initial state in and the last state out.

    delta <- softplus(delta + delta_bias)            (each optional)
    x_t = exp(delta_t A) x_{t-1} + delta_t B_t u_t   x: (batch, D, N)
    y_t = C_t . x_t + D u_t;  y <- y * silu(z)       (D, z optional)

Shapes: u, delta, z (batch, D, L); A (D, N) real; B, C (batch, N, L); D, delta_bias (D,).

:func:`selective_scan` is a two-level chunked scan with a hand-written backward: positions are
grouped in chunks of T; step t of *every* chunk is done at once (T vectorised steps), then the
states entering each chunk are carried (L/T small steps), then each position gets its chunk's
entering state times its in-chunk decay (T vectorised steps). That is ~3T + L/T Python steps on
large slices instead of L tiny ones; decays are only ever multiplied (never divided), so it is
as stable as the plain recurrence. :func:`selective_scan_ref` is the plain loop.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from longssm.kernels.checks import check_float, check_shape


def _scan_(a: torch.Tensor, b: torch.Tensor, x0: torch.Tensor | None, T: int, reverse: bool) -> torch.Tensor:
    """In place along dim 1: b_t <- a_t * b_prev + b_t, b_prev the previous position (next if
    ``reverse``), starting from x0 (None: zero). a, b: (batch, L, *rest). Returns the last state."""
    L = b.shape[1]
    nC = L // T
    M = nC * T
    carry = x0
    if nC > 0:
        main = slice(L - M, L) if reverse else slice(0, M)
        av = a[:, main].unflatten(1, (nC, T))  # (batch, nC, T, *rest): views, no copies
        bv = b[:, main].unflatten(1, (nC, T))
        steps = range(T - 2, -1, -1) if reverse else range(1, T)
        for t in steps:  # 1) scan inside every chunk at once, from a zero state
            prev = t + 1 if reverse else t - 1
            bv[:, :, t].addcmul_(av[:, :, t], bv[:, :, prev])
        decay = av.prod(dim=2)  # (batch, nC, *rest): product of a over each chunk
        starts = torch.empty_like(decay)
        last = 0 if reverse else T - 1
        for c in range(nC - 1, -1, -1) if reverse else range(nC):  # 2) carry states across chunks
            if carry is None:
                starts[:, c].zero_()
                carry = bv[:, c, last].clone()
            else:
                starts[:, c] = carry
                carry = torch.addcmul(bv[:, c, last], decay[:, c], carry)
        run = starts  # ours: updated in place, no allocation per step
        for t in range(T - 1, -1, -1) if reverse else range(T):  # 3) add the entering state
            bv[:, :, t] += run.mul_(av[:, :, t])
    tail = range(L - M - 1, -1, -1) if reverse else range(M, L)
    for t in tail:  # fewer than T positions left over
        if carry is not None:
            b[:, t].addcmul_(a[:, t], carry)
        carry = b[:, t]
    return carry.clone()


class _SelectiveScanCore(torch.autograd.Function):
    """y_t = C_t . x_t with x_t = exp(dt_t A) x_{t-1} + dtu_t B_t; time-major layouts
    dt, dtu (batch, L, D); A (D, N); Bt, Ct (batch, L, N); x0 (batch, D, N) or None."""

    @staticmethod
    def forward(ctx, dt, dtu, A, Bt, Ct, x0, T):
        # Full-size (batch, L, D, N) buffers are few and filled in place: on CPU a fresh large
        # allocation costs ~10x an in-place pass over it (page faults), see BENCHMARKS.md.
        dA = torch.mul(dt[..., None], A).exp_()
        X = torch.mul(dtu[..., None], Bt[:, :, None, :])  # delta B u, scanned in place into x_t
        x_last = _scan_(dA, X, x0, T, reverse=False)
        y = torch.einsum("bldn,bln->bld", X, Ct)
        ctx.save_for_backward(dt, dtu, A, Bt, Ct, x0, dA, X)
        ctx.T = T
        ctx.set_materialize_grads(False)
        return y, x_last

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g_y, g_last):
        dt, dtu, A, Bt, Ct, x0, dA, X = ctx.saved_tensors
        need = ctx.needs_input_grad
        if g_y is None:
            g_y = dt.new_zeros(dt.shape)
        G = torch.mul(g_y[..., None], Ct[:, :, None, :])  # dLoss/dX_t through y_t only
        if g_last is not None:
            G[:, -1] += g_last
        # G_t += dA_{t+1} G_{t+1}: a reverse scan whose coefficients are dA shifted by one.
        _scan_(dA[:, 1:], G[:, :-1], G[:, -1], ctx.T, reverse=True)
        g_dt = g_dtu = g_A = g_B = g_C = g_x0 = None
        if need[1]:
            g_dtu = torch.einsum("bldn,bln->bld", G, Bt)
        if need[3]:
            g_B = torch.einsum("bld,bldn->bln", dtu, G)
        if need[4]:
            g_C = torch.einsum("bld,bldn->bln", g_y, X)
        if need[5]:
            g_x0 = dA[:, 0] * G[:, 0]
        if need[0] or need[2]:
            W = G.mul_(dA)  # in place: dLoss/d(dt_t A) = G_t * dA_t * X_{t-1}
            W[:, 1:] *= X[:, :-1]
            W[:, 0] *= 0 if x0 is None else x0
            if need[0]:
                g_dt = torch.einsum("bldn,dn->bld", W, A)
            if need[2]:
                g_A = W.mul_(dt[..., None]).sum((0, 1))
        return g_dt, g_dtu, g_A, g_B, g_C, g_x0, None


def _check(u, delta, A, B, C, D, z, delta_bias, initial_state):
    for name, t in (("u", u), ("delta", delta), ("A", A), ("B", B), ("C", C)):
        check_float(name, t)
    if u.dim() != 3 or u.shape[-1] == 0:
        raise ValueError(f"u must have shape (batch, D, seq_len >= 1), got {tuple(u.shape)}")
    batch, Dm, L = u.shape
    check_shape("delta", delta, (batch, Dm, L))
    check_shape("A", A, (Dm, None))
    N = A.shape[1]
    check_shape("B", B, (batch, N, L))
    check_shape("C", C, (batch, N, L))
    for name, t in (("D", D), ("delta_bias", delta_bias)):
        if t is not None:
            check_shape(name, t, (Dm,))
    if z is not None:
        check_shape("z", z, (batch, Dm, L))
    if initial_state is not None:
        check_shape("initial_state", initial_state, (batch, Dm, N))


def _per_channel(p, like):
    """A (D,) parameter shaped to broadcast against (batch, D, L) or a one-token (batch, D)."""
    return p[:, None] if like.dim() == 3 else p


def _prepare_delta(delta, delta_bias, delta_softplus):
    if delta_bias is not None:
        delta = delta + _per_channel(delta_bias, delta)
    return F.softplus(delta) if delta_softplus else delta


def _finish(y, u, D, z):
    if D is not None:
        y = y + u * _per_channel(D, u)
    return y if z is None else y * F.silu(z)


def selective_scan(
    u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
    initial_state=None, return_last_state=False, chunk_size=32,
):
    """Chunked selective scan; same arguments and results as :func:`selective_scan_ref`.

    Returns y (batch, D, L), and the last state (batch, D, N) if ``return_last_state``.
    """
    _check(u, delta, A, B, C, D, z, delta_bias, initial_state)
    delta = _prepare_delta(delta, delta_bias, delta_softplus)
    dt = delta.transpose(1, 2).contiguous()
    dtu = (delta * u).transpose(1, 2).contiguous()
    y, last = _SelectiveScanCore.apply(
        dt, dtu, A, B.transpose(1, 2).contiguous(), C.transpose(1, 2).contiguous(),
        initial_state, chunk_size,
    )
    y = _finish(y.transpose(1, 2), u, D, z)
    return (y, last) if return_last_state else y


def selective_scan_ref(
    u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
    initial_state=None, return_last_state=False,
):
    """The plain recurrence, one position at a time (the oracle for :func:`selective_scan`)."""
    _check(u, delta, A, B, C, D, z, delta_bias, initial_state)
    delta = _prepare_delta(delta, delta_bias, delta_softplus)
    x = initial_state if initial_state is not None else u.new_zeros(u.shape[0], u.shape[1], A.shape[1])
    ys = []
    for u_t, d_t, B_t, C_t in zip(u.unbind(-1), delta.unbind(-1), B.unbind(-1), C.unbind(-1)):
        x = torch.exp(d_t[..., None] * A) * x + (d_t * u_t)[..., None] * B_t[:, None, :]
        ys.append((x * C_t[:, None, :]).sum(-1))
    y = _finish(torch.stack(ys, dim=-1), u, D, z)
    return (y, x) if return_last_state else y


def selective_scan_step(u_t, delta_t, A, B_t, C_t, state, D=None, z_t=None, delta_bias=None,
                        delta_softplus=False):
    """One token: u_t, delta_t, z_t (batch, D); B_t, C_t (batch, N); state (batch, D, N) or None.
    Returns (y_t, new_state)."""
    d_t = _prepare_delta(delta_t, delta_bias, delta_softplus)
    x = (d_t * u_t)[..., None] * B_t[:, None, :]
    if state is not None:
        x = x + torch.exp(d_t[..., None] * A) * state
    y = (x * C_t[:, None, :]).sum(-1)
    return _finish(y, u_t, D, z_t), x
