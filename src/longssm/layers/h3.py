"""The H3 layer (Fu, Dao et al., "Hungry Hungry Hippos", ICLR 2023, section 3.2, Algorithm 1).

    q, k, v = x W_Q, x W_K, x W_V                      (batch, L, d_model) each
    k' = ShiftSSM(k)                                   remembers recent tokens (comparison)
    kv = k' (x) v per head                              multiplicative interaction
    y = q . DiagSSM(kv), then W_O                       diagonal SSM (S4D-Lin, bilinear) = memory

Heads (``head_dim`` > 1, H3 section 3.2 "multi-head"): d_model = n_heads * head_dim; within head h
the outer product ``kv[d1, d2] = k'[h, d1] * v[h, d2]`` gives head_dim^2 channels that share the
head's diagonal SSM, and ``y[h, d2] = sum_d1 q[h, d1] * ssm(kv)[h, d1, d2]``. Flattening order, for
inputs and outputs alike: channel ``c = h * head_dim + d`` (head-major); the reference code flattens
its output as ``d * n_heads + h`` instead, a permutation the output projection absorbs.

The two SSMs are cores (``longssm.layers.cores``): ``shift`` a :class:`ShiftCore`, ``diag`` the
long SSM, a core from ``LONG_CORES`` (S4D's diagonal core by default, or S5's shared MIMO core:
LongSSM's "S5" models are H3 with an S5 long filter), optionally behind State Memory Replay
(``smr``); their states nest in :class:`H3State` whatever their type. A per-step ``dt`` goes to the
long core (the shift SSM is discrete).

Ablations (H3 section 5.1): ``use_shift=False`` skips the shift SSM (k' = k), ``use_diag=False``
replaces the diagonal SSM by the identity, ``use_gate=False`` drops q (y = sum_d1 ssm(kv)).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from einops import rearrange
from torch import nn

from longssm.kernels.checks import check_seq, check_token
from longssm.layers.cores import DiagonalCore, ShiftCore
from longssm.layers.linear import Linear
from longssm.layers.options import H3Options
from longssm.layers.s5 import S5Core
from longssm.layers.smr import maybe_smr
from longssm.layers.state import check_state, map_tensors

#: The long SSMs H3 can take (``H3Options.long_core``): core from (channels, options).
LONG_CORES = {
    "diag": lambda H, o: DiagonalCore(H, o.d_state, init=o.init, discretization=o.discretization, dt_min=o.dt_min,
                                      dt_max=o.dt_max, ssm_lr=o.ssm_lr, chunk_size=o.chunk_size),
    "s5": lambda H, o: S5Core(H, o.d_state, init=o.init, dt_min=o.dt_min, dt_max=o.dt_max, ssm_lr=o.ssm_lr),
}


class H3State(NamedTuple):
    shift: Any  # the shift core's state (batch, d_model, shift_state), or None without use_shift
    ssm: Any  # the long core's state over (batch, head_dim, head_dim, n_heads) channels, or None


class H3(nn.Module):
    """H3 mixer; options: :class:`longssm.layers.options.H3Options`."""

    carries_state = True

    def __init__(self, d_model: int, **options):
        super().__init__()
        o = H3Options(**options)
        if o.head_dim < 1 or d_model % o.head_dim:
            raise ValueError(f"head_dim must be >= 1 and divide d_model={d_model}, got {o.head_dim}")
        if o.long_core not in LONG_CORES:
            raise ValueError(f"long_core must be one of {sorted(LONG_CORES)}, got {o.long_core!r}")
        self.d_model, self.head_dim, self.n_heads = d_model, o.head_dim, d_model // o.head_dim
        self.use_gate = o.use_gate
        # q (if gated), k, v in one projection, computed channel-first for the convolutions.
        self.in_proj = Linear(d_model, (3 if o.use_gate else 2) * d_model)
        self.shift = ShiftCore(d_model, o.shift_state, ssm_lr=o.ssm_lr) if o.use_shift else None
        self.diag = maybe_smr(LONG_CORES[o.long_core](self.n_heads, o), self.n_heads, o) if o.use_diag else None
        self.per_step_dt = self.diag is not None and self.diag.per_step_dt
        self.out_proj = Linear(d_model, d_model)

    def reset_parameters(self, *, std: float = 0.02, residual_std: float = 0.02) -> None:
        """GPT-2 init of the projections (W_O is a residual branch's output); the SSM cores keep
        their papers' initialisation."""
        for lin, s in ((self.in_proj, std), (self.out_proj, residual_std)):
            nn.init.normal_(lin.weight, std=s)
            nn.init.zeros_(lin.bias)

    def _unpack(self, state, batch):
        if state is None:
            return None, None
        check_state("H3", state, H3State, batch)
        return state.shift, state.ssm

    def _outer(self, k, v):
        """k, v (batch, d_model, *t) -> kv (batch, d1, d2, n_heads, *t)."""
        if self.head_dim == 1:  # plain product, no broadcasting copies
            return (k * v).unsqueeze(1).unsqueeze(1)
        k = rearrange(k, "b (h d1) ... -> b d1 1 h ...", d1=self.head_dim)
        v = rearrange(v, "b (h d2) ... -> b 1 d2 h ...", d2=self.head_dim)
        return k * v

    def _readout(self, y, q):
        """y (batch, d1, d2, n_heads, *t), q (batch, d_model, *t) or None -> (batch, d_model, *t)."""
        if self.head_dim == 1:
            y = y[:, 0, 0]
            return y if q is None else y * q
        if q is not None:
            y = y * rearrange(q, "b (h d1) ... -> b d1 1 h ...", d1=self.head_dim)
        return rearrange(y.sum(1), "b d2 h ... -> b (h d2) ...")

    def _long(self, kv, s_ssm, step: bool, return_state: bool, dt):
        """The long SSM over the (batch * d1 * d2) rows of kv; its state keeps (batch, d1, d2)."""
        hd, batch = self.head_dim, kv.shape[0]
        flat = None if s_ssm is None else map_tensors(lambda t: t.flatten(0, 2), s_ssm)
        rows = kv.flatten(0, 2)
        if dt is not None:  # one row of steps per (batch, d1, d2) row of kv
            dt = dt.repeat_interleave(hd * hd, dim=0)
        y, flat = self.diag.step(rows, flat, dt) if step else self.diag(rows, flat, return_state, dt)
        return y.unflatten(0, (batch, hd, hd)), map_tensors(lambda t: t.unflatten(0, (batch, hd, hd)), flat)

    def _mix(self, x, state, step: bool, return_state: bool = True, dt=None):
        """Shared body of forward (x: (batch, L, d_model)) and step (x: (batch, d_model))."""
        s_shift, s_ssm = self._unpack(state, x.shape[0])
        if step:
            proj = self.in_proj(x)  # (batch, n * d_model)
        else:  # W @ x^T lands channel-first and contiguous: (batch, n * d_model, L)
            proj = torch.matmul(self.in_proj.weight, x.transpose(1, 2)) + self.in_proj.bias[:, None]
        *q, k, v = proj.split(self.d_model, dim=1)
        q = q[0] if q else None
        if self.shift is not None:
            k, s_shift = self.shift.step(k, s_shift) if step else self.shift(k, s_shift, return_state)
        kv = self._outer(k, v)  # (batch, d1, d2, n_heads, *t)
        if self.diag is not None:
            kv, s_ssm = self._long(kv, s_ssm, step, return_state, dt)
        elif dt is not None:
            raise ValueError("H3 without its long SSM (use_diag=False) takes no per-step dt")
        y = self._readout(kv, q)
        return self.out_proj(y if step else y.transpose(1, 2)), (H3State(s_shift, s_ssm) if return_state else None)

    def forward(self, x: torch.Tensor, state: H3State | None = None, *, return_state: bool = True,
                dt: torch.Tensor | None = None):
        check_seq("x", x, self.d_model, self.in_proj.weight.dtype)
        return self._mix(x, state, step=False, return_state=return_state, dt=dt)

    def step(self, x_t: torch.Tensor, state: H3State, dt: torch.Tensor | None = None):
        check_token("x_t", x_t, self.d_model, self.in_proj.weight.dtype)
        fused = self._fused_step(x_t, state) if dt is None else None
        return fused if fused is not None else self._mix(x_t, state, step=True, dt=dt)

    def _fused_step(self, x_t, state):
        """The step as one call where the backend has one (``h3_step``: native, CPU) and the layer
        is the paper's (one channel per head, Q, the shift SSM, S4D's diagonal SSM, no SMR); else
        None, and :meth:`step` composes the modules (the reference the fused step is tested
        against)."""
        shift, diag = self.shift, self.diag
        plain = self.head_dim == 1 and self.use_gate and type(shift) is ShiftCore and type(diag) is DiagonalCore
        fused = diag.op("h3_step") if plain else None
        if fused is None:
            return None
        s_shift, s_ssm = self._unpack(state, x_t.shape[0])
        dA, dB, C = diag.frozen("discrete", diag.discrete)
        done = fused(x_t, self.in_proj.weight, self.in_proj.bias, shift._kernel(), shift.D, s_shift, dA, dB, C,
                     diag.D, None if s_ssm is None else s_ssm.flatten(0, 2), self.out_proj.weight, self.out_proj.bias)
        if done is None:
            return None
        out, window, ssm = done
        return out, H3State(window, ssm.unflatten(0, (x_t.shape[0], 1, 1)))

    def init_state(self, batch_size: int, *, device=None, dtype=None) -> H3State:
        shift = None if self.shift is None else self.shift.init_state(batch_size, device=device, dtype=dtype)
        ssm = None
        if self.diag is not None:
            hd = self.head_dim
            ssm = self.diag.init_state(batch_size * hd * hd, device=device, dtype=dtype)
            ssm = map_tensors(lambda t: t.unflatten(0, (batch_size, hd, hd)), ssm)
        return H3State(shift, ssm)
