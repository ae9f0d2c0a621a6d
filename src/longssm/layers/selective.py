"""The Mamba block (Gu & Dao 2023, section 3.4, Figure 3), a selective-SSM baseline mixer.

    x, z = in_proj(u)                              (batch, L, d_inner) each, d_inner = expand * d_model
    x = silu(causal depthwise conv_{d_conv}(x))
    dt, B, C = x_proj(x); dt = dt_proj(dt)        input-dependent (selective) parameters
    y = selective_scan(x, dt, A, B, C, D, z, softplus(. + dt_bias))
    out = out_proj(y)

Initialisation as in mamba_ssm: A = -(1..N) per channel (S4D-Real), D = 1, dt_proj bias the inverse
softplus of dt ~ logU[dt_min, dt_max]; A_log and D take no weight decay.
State: the last d_conv - 1 conv inputs and the SSM state.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from longssm.kernels.checks import check_seq, check_token
from longssm.kernels.selective_scan import selective_scan, selective_scan_step
from longssm.layers.optim import set_optim
from longssm.layers.state import check_state


class MambaState(NamedTuple):
    conv: torch.Tensor  # (batch, d_inner, d_conv - 1): previous conv inputs, oldest first
    ssm: torch.Tensor  # (batch, d_inner, d_state)


class SelectiveSSM(nn.Module):
    def __init__(self, d_model: int, d_state: int = 16, *, d_conv: int = 4, expand: int = 2,
                 dt_rank: int | None = None, dt_min: float = 1e-3, dt_max: float = 1e-1,
                 dt_init_floor: float = 1e-4, segment_size: int | None = None):
        super().__init__()
        self.d_model, self.d_state, self.d_conv = d_model, d_state, d_conv
        self.d_inner = expand * d_model
        self.dt_rank = dt_rank or math.ceil(d_model / 16)
        self.segment_size = segment_size
        self.in_proj = nn.Linear(d_model, 2 * self.d_inner, bias=False)
        self.conv = nn.Conv1d(self.d_inner, self.d_inner, d_conv, groups=self.d_inner)
        self.x_proj = nn.Linear(self.d_inner, self.dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, self.d_inner)
        self.dt_proj._no_reinit = True  # its own init below (Mamba section 3.6), kept by models
        nn.init.uniform_(self.dt_proj.weight, -self.dt_rank**-0.5, self.dt_rank**-0.5)
        log_dt = torch.rand(self.d_inner) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)
        dt = torch.exp(log_dt).clamp(min=dt_init_floor)
        with torch.no_grad():
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # inverse softplus
        A = torch.arange(1, d_state + 1, dtype=torch.float32).repeat(self.d_inner, 1)
        self.A_log = set_optim(nn.Parameter(torch.log(A)), weight_decay=0.0)
        self.D = set_optim(nn.Parameter(torch.ones(self.d_inner)), weight_decay=0.0)
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=False)

    def _ssm_inputs(self, x):
        """x (batch, *t, d_inner) -> dt (batch, *t, d_inner), B, C (batch, *t, d_state)."""
        dt, B, C = self.x_proj(x).split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        return dt @ self.dt_proj.weight.T, B, C

    def _unpack(self, state, batch):
        if state is None:
            return None, None
        check_state("SelectiveSSM", state, MambaState, batch)
        return state.conv, state.ssm

    def forward(self, u: torch.Tensor, state: MambaState | None = None, *, return_state: bool = True):
        check_seq("u", u, self.d_model)
        conv_state, ssm_state = self._unpack(state, u.shape[0])
        x, z = self.in_proj(u).transpose(1, 2).chunk(2, dim=1)  # (batch, d_inner, L) each
        history = F.pad(x, (self.d_conv - 1, 0)) if conv_state is None else torch.cat([conv_state, x], -1)
        x = F.silu(F.conv1d(history, self.conv.weight, self.conv.bias, groups=self.d_inner))
        dt, B, C = self._ssm_inputs(x.transpose(1, 2))
        out = selective_scan(
            x, dt.transpose(1, 2), -torch.exp(self.A_log), B.transpose(1, 2), C.transpose(1, 2),
            self.D, z, delta_bias=self.dt_proj.bias, delta_softplus=True,
            initial_state=ssm_state, return_last_state=return_state, segment_size=self.segment_size,
        )
        if not return_state:
            return self.out_proj(out.transpose(1, 2)), None
        y, ssm_state = out
        new_state = MambaState(history[..., history.shape[-1] - (self.d_conv - 1):], ssm_state)
        return self.out_proj(y.transpose(1, 2)), new_state

    def step(self, u_t: torch.Tensor, state: MambaState):
        check_token("u_t", u_t, self.d_model)
        conv_state, ssm_state = self._unpack(state, u_t.shape[0])
        if conv_state is None:
            conv_state = u_t.new_zeros(u_t.shape[0], self.d_inner, self.d_conv - 1)
        x, z = self.in_proj(u_t).chunk(2, dim=-1)  # (batch, d_inner) each
        window = torch.cat([conv_state, x[..., None]], dim=-1)  # (batch, d_inner, d_conv)
        x = F.silu((window * self.conv.weight[:, 0]).sum(-1) + self.conv.bias)
        dt, B, C = self._ssm_inputs(x)
        y, ssm_state = selective_scan_step(
            x, dt, -torch.exp(self.A_log), B, C, ssm_state, self.D, z,
            delta_bias=self.dt_proj.bias, delta_softplus=True,
        )
        return self.out_proj(y), MambaState(window[..., 1:], ssm_state)

    def init_state(self, batch_size: int, *, device=None, dtype=None) -> MambaState:
        kw = dict(device=device or self.D.device, dtype=dtype or self.D.dtype)
        return MambaState(torch.zeros(batch_size, self.d_inner, self.d_conv - 1, **kw),
                          torch.zeros(batch_size, self.d_inner, self.d_state, **kw))
