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

Ablations (H3 section 5.1): ``use_shift=False`` skips the shift SSM (k' = k), ``use_diag=False``
replaces the diagonal SSM by the identity, ``use_gate=False`` drops q (y = sum_d1 ssm(kv)).
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import torch
from einops import rearrange
from torch import nn

from longssm.kernels.checks import check_seq, check_token
from longssm.layers.ssm_conv import DiagonalSSMConv, ShiftSSMConv
from longssm.layers.state import check_state


class H3State(NamedTuple):
    shift: Optional[torch.Tensor]  # (batch, d_model, shift_state): last inputs of k
    ssm: Optional[torch.Tensor]  # (batch, head_dim, head_dim, n_heads, d_state // 2) complex


class H3(nn.Module):
    """H3 mixer; ``ssm_options`` go to :class:`DiagonalSSMConv` (init, dt_min, dt_max, ssm_lr,
    chunk_size)."""

    def __init__(self, d_model: int, d_state: int = 64, *, head_dim: int = 1, shift_state: int = 64,
                 discretization: str = "bilinear", init: str = "lin", use_shift: bool = True,
                 use_diag: bool = True, use_gate: bool = True, ssm_lr: float = 1e-3, **ssm_options):
        super().__init__()
        if head_dim < 1 or d_model % head_dim:
            raise ValueError(f"head_dim must be >= 1 and divide d_model={d_model}, got {head_dim}")
        self.d_model, self.head_dim, self.n_heads = d_model, head_dim, d_model // head_dim
        self.use_gate = use_gate
        # q (if gated), k, v in one projection, computed channel-first for the convolutions.
        self.in_proj = nn.Linear(d_model, (3 if use_gate else 2) * d_model)
        self.shift = ShiftSSMConv(d_model, shift_state, ssm_lr=ssm_lr) if use_shift else None
        self.diag = DiagonalSSMConv(self.n_heads, d_state, init=init, discretization=discretization,
                                    ssm_lr=ssm_lr, **ssm_options) if use_diag else None
        self.out_proj = nn.Linear(d_model, d_model)

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

    def _mix(self, x, state, step: bool, return_state: bool = True):
        """Shared body of forward (x: (batch, d_model, L)) and step (x: (batch, d_model))."""
        batch = x.shape[0]
        s_shift, s_ssm = self._unpack(state, batch)
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
            hd = self.head_dim
            flat = None if s_ssm is None else s_ssm.flatten(0, 2)
            y, flat = self.diag.step(kv.flatten(0, 2), flat) if step else self.diag(kv.flatten(0, 2), flat, return_state)
            kv, s_ssm = y.unflatten(0, (batch, hd, hd)), None if flat is None else flat.unflatten(0, (batch, hd, hd))
        y = self._readout(kv, q)
        return self.out_proj(y if step else y.transpose(1, 2)), (H3State(s_shift, s_ssm) if return_state else None)

    def forward(self, x: torch.Tensor, state: H3State | None = None, *, return_state: bool = True):
        check_seq("x", x, self.d_model)
        return self._mix(x, state, step=False, return_state=return_state)

    def step(self, x_t: torch.Tensor, state: H3State):
        check_token("x_t", x_t, self.d_model)
        return self._mix(x_t, state, step=True)

    def init_state(self, batch_size: int, *, device=None, dtype=None) -> H3State:
        shift = None if self.shift is None else self.shift.init_state(batch_size, device=device, dtype=dtype)
        ssm = None
        if self.diag is not None:
            hd = self.head_dim
            ssm = self.diag.init_state(batch_size * hd * hd, device=device, dtype=dtype)
            ssm = ssm.unflatten(0, (batch_size, hd, hd))
        return H3State(shift, ssm)
