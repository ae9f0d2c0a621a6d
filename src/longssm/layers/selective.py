"""The Mamba block (Gu & Dao 2023, section 3.4, Figure 3), a selective-SSM baseline mixer.

    x, z = in_proj(u)                              (batch, L, d_inner) each, d_inner = expand * d_model
    x = silu(causal depthwise conv_{d_conv}(x))
    y = SelectiveCore(x)                          dt, B, C from x; the selective scan with D skip
    out = out_proj(y * silu(z))

State: the last d_conv - 1 conv inputs and the core's state.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from longssm.kernels.checks import check_seq, check_token
from longssm.layers.cores import SelectiveCore, compute_dtype
from longssm.layers.linear import Linear
from longssm.layers.options import MambaOptions
from longssm.layers.smr import SMRCore, maybe_smr
from longssm.layers.state import check_state, rename_on_load


class MambaState(NamedTuple):
    conv: torch.Tensor  # (batch, d_inner, d_conv - 1): previous conv inputs, oldest first
    ssm: Any  # the selective core's state: (batch, d_inner, d_state)


class SelectiveSSM(nn.Module):
    """Mamba block; options: :class:`longssm.layers.options.MambaOptions`."""

    carries_state = True

    def __init__(self, d_model: int, **options):
        super().__init__()
        o = MambaOptions(**options)
        self.d_model, self.d_conv = d_model, o.d_conv
        self.d_inner = o.expand * d_model
        self.in_proj = Linear(d_model, 2 * self.d_inner, bias=False)
        self.conv = nn.Conv1d(self.d_inner, self.d_inner, o.d_conv, groups=self.d_inner)
        core = SelectiveCore(self.d_inner, o.d_state, dt_rank=o.dt_rank or math.ceil(d_model / 16),
                             dt_min=o.dt_min, dt_max=o.dt_max, dt_init_floor=o.dt_init_floor,
                             segment_size=o.segment_size)
        self.core = maybe_smr(core, self.d_inner, o)  # SMR gates x, from which the core also reads dt, B, C
        self.per_step_dt = True
        self.out_proj = Linear(self.d_inner, d_model, bias=False)
        # checkpoints before the core seam kept the selective SSM's parameters in the block
        rename_on_load(self, {p: "core." + p for p in ("x_proj.", "dt_proj.", "A_log", "D")})

    def reset_parameters(self, *, std: float = 0.02, residual_std: float = 0.02) -> None:
        """GPT-2 init of the projections (out_proj is a residual branch's output); the depthwise
        conv keeps PyTorch's init and the core Mamba's (see :meth:`SelectiveCore.reset_parameters`)."""
        nn.init.normal_(self.in_proj.weight, std=std)
        selective = self.core.inner if isinstance(self.core, SMRCore) else self.core
        selective.reset_parameters(std=std, residual_std=residual_std)
        nn.init.normal_(self.out_proj.weight, std=residual_std)

    def _unpack(self, state, batch):
        if state is None:
            return None, None
        check_state("SelectiveSSM", state, MambaState, batch)
        return state.conv, state.ssm

    def forward(self, u: torch.Tensor, state: MambaState | None = None, *, return_state: bool = True,
                dt: torch.Tensor | None = None):
        """u (batch, L, d_model); ``dt`` (batch, L): per-step time steps scaling the selective step."""
        check_seq("u", u, self.d_model, self.in_proj.weight.dtype)
        conv_state, ssm_state = self._unpack(state, u.shape[0])
        x, z = self.in_proj(u).transpose(1, 2).chunk(2, dim=1)  # (batch, d_inner, L) each
        history = F.pad(x, (self.d_conv - 1, 0)) if conv_state is None else torch.cat([conv_state, x], -1)
        x = F.silu(F.conv1d(history, self.conv.weight, self.conv.bias, groups=self.d_inner))
        y, ssm_state = self.core(x, ssm_state, return_state, dt)
        out = self.out_proj((y * F.silu(z)).transpose(1, 2))
        if not return_state:
            return out, None
        conv_state = history[..., history.shape[-1] - (self.d_conv - 1):]
        return out, MambaState(conv_state.to(compute_dtype(conv_state.dtype)), ssm_state)

    def step(self, u_t: torch.Tensor, state: MambaState, dt: torch.Tensor | None = None):
        check_token("u_t", u_t, self.d_model, self.in_proj.weight.dtype)
        conv_state, ssm_state = self._unpack(state, u_t.shape[0])
        if conv_state is None:
            conv_state = u_t.new_zeros(u_t.shape[0], self.d_inner, self.d_conv - 1)
        fused = self._fused_step(u_t, conv_state, ssm_state) if dt is None else None
        if fused is not None:
            out, conv_state, ssm_state = fused
            return out, MambaState(conv_state, ssm_state)
        x, z = self.in_proj(u_t).chunk(2, dim=-1)  # (batch, d_inner) each
        window = torch.cat([conv_state, x[..., None]], dim=-1)  # (batch, d_inner, d_conv)
        x = F.silu((window * self.conv.weight[:, 0]).sum(-1) + self.conv.bias)
        y, ssm_state = self.core.step(x, ssm_state, dt)
        conv_state = window[..., 1:]
        return self.out_proj(y * F.silu(z)), MambaState(conv_state.to(compute_dtype(conv_state.dtype)), ssm_state)

    def _fused_step(self, u_t, conv_state, ssm_state):
        """The step as one call where the backend has one (``mamba_step``: native, CPU) and the
        core is the plain selective one at its trained step; else None, and :meth:`step` composes
        the modules (the reference the fused step is tested against)."""
        core = self.core
        plain = type(core) is SelectiveCore and core.dt_scale == 1.0 and self.in_proj.bias is None \
            and self.out_proj.bias is None
        fused = core.op("mamba_step") if plain else None
        if fused is None:
            return None
        A = -torch.exp(core.A_log)
        return fused(u_t, self.in_proj.weight, self.conv.weight, self.conv.bias, conv_state, core.x_proj.weight,
                     core.dt_proj.weight, core.dt_proj.bias, A, core.D, ssm_state, self.out_proj.weight)

    def init_state(self, batch_size: int, *, device=None, dtype=None) -> MambaState:
        ref = self.in_proj.weight
        conv = torch.zeros(batch_size, self.d_inner, self.d_conv - 1, device=device or ref.device,
                           dtype=compute_dtype(dtype or ref.dtype))
        return MambaState(conv, self.core.init_state(batch_size, device=device, dtype=dtype))
