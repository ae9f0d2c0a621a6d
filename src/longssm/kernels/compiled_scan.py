"""The selective scan compiled by ``torch.compile``: the ``compile`` backend's ``selective_scan``.

Same arguments, results and semantics as :func:`longssm.kernels.selective_scan.selective_scan`
(Mamba, Gu & Dao 2023, Algorithm 2). The sequence is cut into blocks of :data:`BLOCK` positions;
one block's recurrence is written as an unrolled Python loop over its positions, and
``torch.compile`` (inductor) turns that loop into one fused C++ loop nest over (batch, channel)
with the state dimension vectorised (the forward is one OpenMP loop): the decays, inputs, state
updates and readouts of a block stay in cache, and one call replaces the ~5 dispatched ops per
position of the eager path. The backward pass is the same idea: a compiled block recomputes its
states from the state that entered it (only the entering states are saved, as in mamba_ssm's CUDA
kernel) and runs the reverse recurrence and the reductions over the state dimension.
The reductions over channels (the gradients of B and C) are left out of it: inductor splits them
into one parallel region per state index, which costs more than the whole block.

Sequences are right-padded to a whole number of blocks with delta = 0 (decay 1, input 0), which
leaves the state unchanged, so the last state is exact and the padded outputs are dropped.
The first call for each (batch, channels, state size, dtype) compiles (about 20 s here, cached on
disk by inductor across processes); this backend is opt-in (``model.backend = "compile"``,
``LONGSSM_BACKEND=compile``) and needs a C++ compiler on CPU.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from longssm.kernels.selective_scan import _check, _finish, _prepare_delta

#: positions per compiled block: the unrolled loop's length (compile time grows with it; 16-64
#: run at the same speed on the 2-core machine).
BLOCK = 32


def _block_forward(dt, dtu, A, Bt, Ct, x):
    """One block: dt, dtu (batch, D, T) (slices of the channel-first inputs); Bt, Ct (batch, T, N);
    x (batch, D, N). Returns (y (batch, D, T), the state after the block)."""
    ys = []
    for t in range(dt.shape[-1]):
        x = torch.exp(dt[..., t, None] * A) * x + dtu[..., t, None] * Bt[:, t, None, :]
        ys.append((x * Ct[:, t, None, :]).sum(-1))
    return torch.stack(ys, -1), x


def _block_backward(dt, dtu, A, Bt, Ct, x, g_y, G):
    """Gradients of one block entered with state x; G = dLoss/d(state leaving the block).

    Layouts as :func:`_block_forward`, g_y (batch, D, T). Returns (g_dt, g_dtu (batch, D, T), g_A
    per batch row (batch, D, N), the states X_t and the state gradients G_t (batch, T, D, N) for the
    channel reductions, dLoss/d(entering state))."""
    T = dt.shape[-1]
    decays, states = [], [x]
    for t in range(T):
        decays.append(torch.exp(dt[..., t, None] * A))
        states.append(decays[-1] * states[-1] + dtu[..., t, None] * Bt[:, t, None, :])
    g_dt, g_dtu, Gs, g_A = [None] * T, [None] * T, [None] * T, 0
    for t in range(T - 1, -1, -1):
        G = G + g_y[..., t, None] * Ct[:, t, None, :]
        Gs[t] = G
        g_dtu[t] = (G * Bt[:, t, None, :]).sum(-1)
        W = G * decays[t] * states[t]  # dLoss/d(dt_t A)
        g_dt[t] = (W * A).sum(-1)
        g_A = g_A + W * dt[..., t, None]
        G = decays[t] * G
    return (torch.stack(g_dt, -1), torch.stack(g_dtu, -1), g_A, torch.stack(states[1:], 1),
            torch.stack(Gs, 1), G)


#: compilations kept per block function: a new batch size, width, state size or dtype compiles
#: again (a changed sequence length only makes strides dynamic); dynamo's default of 8 is a
#: global setting, raised here for these two functions only
RECOMPILE_LIMIT = 64


@functools.cache
def _compiled(name: str):
    fn = torch.compile({"forward": _block_forward, "backward": _block_backward}[name], fullgraph=True)

    def call(*args):
        with torch._dynamo.config.patch(recompile_limit=RECOMPILE_LIMIT):
            return fn(*args)

    return call


def _per_position(v, M):
    """sum over channels of v (batch, D, T) times M (batch, T, D, N) -> (batch, T, N), as one
    batched matrix product."""
    b, T, D, N = M.shape
    return torch.bmm(v.transpose(1, 2).contiguous().view(b * T, 1, D), M.view(b * T, D, N)).view(b, T, N)


class _CompiledScan(torch.autograd.Function):
    """Padded to whole blocks: dt, dtu (batch, D, L) channel-first; A (D, N); Bt, Ct
    (batch, L, N) time-major (small); x0 (batch, D, N)."""

    @staticmethod
    def forward(ctx, dt, dtu, A, Bt, Ct, x0):
        fwd = _compiled("forward")
        blocks = range(0, dt.shape[-1], BLOCK)
        ys, entering, x = [], [], x0
        for s in blocks:
            entering.append(x)
            sl = slice(s, s + BLOCK)
            y, x = fwd(dt[..., sl], dtu[..., sl], A, Bt[:, sl], Ct[:, sl], x)
            ys.append(y)
        ctx.save_for_backward(dt, dtu, A, Bt, Ct, torch.stack(entering))
        ctx.set_materialize_grads(False)
        return torch.cat(ys, -1), x  # one copy at the end: block-by-block strided writes cost more

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g_y, g_last):
        dt, dtu, A, Bt, Ct, entering = ctx.saved_tensors
        bwd = _compiled("backward")
        g_y = dt.new_zeros(dt.shape) if g_y is None else g_y.contiguous()
        G = torch.zeros_like(entering[0]) if g_last is None else g_last
        g_A = torch.zeros_like(A)
        per_block = []  # (g_dt, g_dtu, g_B, g_C) of each block, last block first
        for i in range(len(entering) - 1, -1, -1):
            sl = slice(i * BLOCK, (i + 1) * BLOCK)
            g_dt, g_dtu, gA, X, Gs, G = bwd(
                dt[..., sl], dtu[..., sl], A, Bt[:, sl], Ct[:, sl], entering[i], g_y[..., sl], G)
            g_A += gA.sum(0)
            per_block.append((g_dt, g_dtu, _per_position(dtu[..., sl], Gs), _per_position(g_y[..., sl], X)))
        g_dt, g_dtu, g_B, g_C = (torch.cat(parts[::-1], dim) for parts, dim in zip(zip(*per_block), (-1, -1, 1, 1)))
        return g_dt, g_dtu, g_A, g_B, g_C, G


def _padded(t, L_pad):
    """(batch, C, L) zero-padded at the end to L_pad, and contiguous."""
    return F.pad(t, (0, L_pad - t.shape[-1])) if L_pad > t.shape[-1] else t.contiguous()


def selective_scan_compiled(
    u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
    initial_state=None, return_state=False, segment_size=None,
):
    """:func:`~longssm.kernels.selective_scan.selective_scan` through compiled blocks of
    :data:`BLOCK` positions; ``segment_size`` is accepted for an identical signature and unused.

    Returns (y (batch, D, L), the last state (batch, D, N) or None without ``return_state``)."""
    _check(u, delta, A, B, C, D, z, delta_bias, initial_state)
    delta = _prepare_delta(delta, delta_bias, delta_softplus)
    L = u.shape[-1]
    L_pad = -(-L // BLOCK) * BLOCK
    x0 = initial_state if initial_state is not None else u.new_zeros(u.shape[0], u.shape[1], A.shape[1])
    y, last = _CompiledScan.apply(
        _padded(delta, L_pad), _padded(delta * u, L_pad), A,
        _padded(B, L_pad).transpose(1, 2).contiguous(), _padded(C, L_pad).transpose(1, 2).contiguous(), x0,
    )
    y = _finish(y[..., :L], u, D, z)
    return y, (last if return_state else None)
