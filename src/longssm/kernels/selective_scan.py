"""Selective scan (Mamba / S6, Gu & Dao 2023, Algorithm 2) with the argument semantics of
``mamba_ssm``'s ``selective_scan_ref``, plus an initial state in and the last state out.

    delta <- softplus(delta + delta_bias)            (each optional)
    x_t = exp(delta_t A) x_{t-1} + delta_t B_t u_t   x: (batch, D, N)
    y_t = C_t . x_t + D u_t;  y <- y * silu(z)       (D, z optional)

Shapes: u, delta, z (batch, D, L); A (D, N) real; B, C (batch, N, L); D, delta_bias (D,).

:func:`selective_scan` is chunked with a hand-written backward: the sequence is cut into
segments whose (batch, S, D, N) buffers fit in cache and are reused from segment to segment;
inside a segment the decays, inputs and readouts are computed in parallel (whole-segment tensor
ops) and the recurrence itself is :func:`longssm.kernels.recurrence.scan_` (one in-place
multiply-add per position), the primitive the S5 core shares; the state is carried
between segments, and backward recomputes a segment from the state that entered it. No autograd
graph per step, no full-length (batch, L, D, N) tensor. :func:`selective_scan_ref` is the plain
loop under autograd.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from longssm.kernels.checks import check_float, check_shape
from longssm.kernels.recurrence import scan_


class _Workspace:
    """Three (batch, S, D, N) buffers reused by every segment (decays, states, state gradients),
    with their per-position views made once. Fresh large allocations are page-faulted in one page
    at a time, which on CPU costs more than the arithmetic done in them."""

    def __init__(self, dt, A, S):
        self.buf = dt.new_empty(3, dt.shape[0], min(S, dt.shape[1]), dt.shape[2], A.shape[1])
        self.views = [b.unbind(1) for b in self.buf]

    def segment_states(self, dt, dtu, A, Bt, x0):
        """Decays dA and states X (batch, S, D, N) of one segment entered with state x0."""
        S = dt.shape[1]
        dA = torch.mul(dt[..., None], A, out=self.buf[0, :, :S]).exp_()
        X = torch.mul(dtu[..., None], Bt[:, :, None, :], out=self.buf[1, :, :S])  # delta B u -> x_t
        scan_(self.views[0][:S], self.views[1][:S], x0, reverse=False)
        return dA, X


class _SelectiveScanCore(torch.autograd.Function):
    """y_t = C_t . x_t with x_t = exp(dt_t A) x_{t-1} + dtu_t B_t; time-major layouts
    dt, dtu (batch, L, D); A (D, N); Bt, Ct (batch, L, N); x0 (batch, D, N) or None.

    The sequence is processed in segments of S positions whose (batch, S, D, N) buffers stay in
    cache and are reused from segment to segment; only the state entering each segment is saved,
    and backward recomputes a segment's states from it (as mamba_ssm's CUDA kernel does). No
    full-length (batch, L, D, N) buffer is ever allocated.
    """

    @staticmethod
    def forward(ctx, dt, dtu, A, Bt, Ct, x0, S):
        y = dt.new_empty(dt.shape)
        ws = _Workspace(dt, A, S)
        entering, x = [], x0
        for sl in _segments(dt.shape[1], S):
            entering.append(x)
            _, X = ws.segment_states(dt[:, sl], dtu[:, sl], A, Bt[:, sl], x)
            y[:, sl] = torch.einsum("bldn,bln->bld", X, Ct[:, sl])
            x = X[:, -1].clone()
        zeros = dt.new_zeros(dt.shape[0], dt.shape[2], A.shape[1])
        ctx.save_for_backward(dt, dtu, A, Bt, Ct, x0, *(zeros if e is None else e for e in entering))
        ctx.sizes = (S, x0 is None)
        ctx.set_materialize_grads(False)
        return y, x

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g_y, g_last):
        dt, dtu, A, Bt, Ct, x0, *entering = ctx.saved_tensors
        S, zero_start = ctx.sizes
        need = ctx.needs_input_grad
        if g_y is None:
            g_y = dt.new_zeros(dt.shape)
        g_dt = torch.empty_like(dt) if need[0] else None
        g_dtu = torch.empty_like(dtu) if need[1] else None
        g_A = torch.zeros_like(A) if need[2] else None
        g_B = torch.empty_like(Bt) if need[3] else None
        g_C = torch.empty_like(Ct) if need[4] else None
        carry = g_last  # dLoss/d(state leaving the segment), from later segments
        segments = _segments(dt.shape[1], S)
        ws = _Workspace(dt, A, S)
        for i in range(len(segments) - 1, -1, -1):
            sl, x_in = segments[i], None if (i == 0 and zero_start) else entering[i]
            dA, X = ws.segment_states(dt[:, sl], dtu[:, sl], A, Bt[:, sl], x_in)
            Sc = dA.shape[1]
            # dLoss/dX_t through y_t only
            G = torch.mul(g_y[:, sl, :, None], Ct[:, sl, None, :], out=ws.buf[2, :, :Sc])
            if carry is not None:
                G[:, -1] += carry
            # G_t += dA_{t+1} G_{t+1}: a reverse scan whose coefficients are dA shifted by one.
            scan_(ws.views[0][1:Sc], ws.views[2][: Sc - 1], G[:, -1], reverse=True)
            carry = dA[:, 0] * G[:, 0]  # dLoss/d(state entering this segment)
            if need[1]:
                g_dtu[:, sl] = torch.einsum("bldn,bln->bld", G, Bt[:, sl])
            if need[3]:
                g_B[:, sl] = torch.einsum("bld,bldn->bln", dtu[:, sl], G)
            if need[4]:
                g_C[:, sl] = torch.einsum("bld,bldn->bln", g_y[:, sl], X)
            if need[0] or need[2]:
                W = G.mul_(dA)  # in place: dLoss/d(dt_t A) = G_t * dA_t * X_{t-1}
                W[:, 1:] *= X[:, :-1]
                W[:, 0] *= 0 if x_in is None else x_in
                if need[0]:
                    g_dt[:, sl] = (W * A).sum(-1)  # 2-5x faster than the equivalent einsum (a bmm per (b, l)) on CPU
                if need[2]:
                    g_A += W.mul_(dt[:, sl, :, None]).sum((0, 1))
        g_x0 = carry if need[5] else None
        return g_dt, g_dtu, g_A, g_B, g_C, g_x0, None


def _segments(L: int, S: int) -> list[slice]:
    return [slice(s, s + S) for s in range(0, L, S)]


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


def _check_step(u_t, delta_t, A, B_t, C_t, state, D, z_t, delta_bias):
    """The shapes of one step's arguments (:func:`selective_scan_step`), as :func:`_check`'s."""
    for name, t in (("u_t", u_t), ("delta_t", delta_t), ("A", A), ("B_t", B_t), ("C_t", C_t)):
        check_float(name, t)
    if u_t.dim() != 2:
        raise ValueError(f"u_t must have shape (batch, D), got {tuple(u_t.shape)}")
    batch, Dm = u_t.shape
    check_shape("delta_t", delta_t, (batch, Dm))
    check_shape("A", A, (Dm, None))
    for name, t in (("B_t", B_t), ("C_t", C_t)):
        check_shape(name, t, (batch, A.shape[1]))
    for name, t in (("D", D), ("delta_bias", delta_bias)):
        if t is not None:
            check_shape(name, t, (Dm,))
    if z_t is not None:
        check_shape("z_t", z_t, (batch, Dm))
    if state is not None:
        check_shape("state", state, (batch, Dm, A.shape[1]))


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


def _segment_size(elements_per_position: int) -> int:
    return max(1, (1 << 20) // elements_per_position)  # 1M elements: 4 MB per fp32 buffer


@torch.compiler.disable  # opaque to a compiled model: dynamo would trace every position of the loop
def selective_scan(
    u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
    initial_state=None, return_state=False, segment_size=None,
):
    """Chunked selective scan; same arguments and results as :func:`selective_scan_ref`.

    ``segment_size``: positions per cache-sized segment (default: 1M elements of (batch, S, D, N)).

    Returns (y (batch, D, L), the last state (batch, D, N) or None without ``return_state``).
    """
    _check(u, delta, A, B, C, D, z, delta_bias, initial_state)
    delta = _prepare_delta(delta, delta_bias, delta_softplus)
    dt = delta.transpose(1, 2).contiguous()
    dtu = (delta * u).transpose(1, 2).contiguous()
    y, last = _SelectiveScanCore.apply(
        dt, dtu, A, B.transpose(1, 2).contiguous(), C.transpose(1, 2).contiguous(),
        initial_state, segment_size or _segment_size(u.shape[0] * u.shape[1] * A.shape[1]),
    )
    y = _finish(y.transpose(1, 2), u, D, z)
    return y, (last if return_state else None)


def selective_scan_ref(
    u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
    initial_state=None, return_state=False, segment_size=None,
):
    """The plain recurrence, one position at a time (the oracle for :func:`selective_scan`);
    ``segment_size`` is accepted for an identical signature and unused."""
    _check(u, delta, A, B, C, D, z, delta_bias, initial_state)
    delta = _prepare_delta(delta, delta_bias, delta_softplus)
    x = initial_state if initial_state is not None else u.new_zeros(u.shape[0], u.shape[1], A.shape[1])
    ys = []
    for u_t, d_t, B_t, C_t in zip(u.unbind(-1), delta.unbind(-1), B.unbind(-1), C.unbind(-1)):
        x = torch.exp(d_t[..., None] * A) * x + (d_t * u_t)[..., None] * B_t[:, None, :]
        ys.append((x * C_t[:, None, :]).sum(-1))
    y = _finish(torch.stack(ys, dim=-1), u, D, z)
    return y, (x if return_state else None)


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
