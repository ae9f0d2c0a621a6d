"""Stand-alone SSM sequence mixers: S4D, S5 and the shift SSM.

All follow the S4D block (s4/models/s4/s4d.py): an SSM core per channel with D skip, GELU,
then a position-wise output transform: Linear(d, 2d) + GLU (``postact="glu"``, s4d.py's default)
or a plain Linear(d, d) (``postact="linear"``, the safari configs the H3 paper's synthetic S4D
baseline ran with; the GLU's multiplicative gate is exactly what H3 argues plain SSMs lack).
Input and output (batch, L, d_model); the state nests the core's state.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from longssm.kernels.checks import check_seq, check_token
from longssm.layers.cores import DiagonalCore, ShiftCore
from longssm.layers.linear import Linear
from longssm.layers.options import S4DOptions, S5Options, ShiftOptions
from longssm.layers.s5 import S5Core
from longssm.layers.smr import maybe_smr
from longssm.layers.state import check_state, rename_on_load


class S4DState(NamedTuple):
    ssm: Any  # the diagonal core's state: (batch, d_model, d_state // 2) complex


class ShiftState(NamedTuple):
    window: Any  # the shift core's state: (batch, d_model, d_state), last inputs, newest first


class S5State(NamedTuple):
    ssm: Any  # the S5 core's state: (batch, d_state) complex


class _CoreMixer(nn.Module):
    state_type: type
    carries_state = True  # a fixed-size state, carried across training segments (LongSSM)

    def __init__(self, d_model: int, core: nn.Module, postact: str):
        super().__init__()
        if postact not in ("glu", "linear"):
            raise ValueError(f"postact must be 'glu' or 'linear', got {postact!r}")
        self.d_model, self.glu = d_model, postact == "glu"
        self.core = core
        self.per_step_dt = core.per_step_dt  # takes a per-step time step dt (batch, L)
        self.out_proj = Linear(d_model, (2 if self.glu else 1) * d_model)
        rename_on_load(self, {"conv.": "core."})  # checkpoints before the core seam

    def reset_parameters(self, *, std: float = 0.02, residual_std: float = 0.02) -> None:
        """GPT-2 init of the output transform (a residual branch's output); the core keeps its
        paper's initialisation."""
        nn.init.normal_(self.out_proj.weight, std=residual_std)
        nn.init.zeros_(self.out_proj.bias)

    def _out(self, y):
        y = self.out_proj(F.gelu(y))
        return F.glu(y, dim=-1) if self.glu else y

    def _core_state(self, state, batch):
        if state is None:
            return None
        check_state(type(self).__name__, state, self.state_type, batch)
        return state[0]

    def forward(self, x: torch.Tensor, state=None, *, return_state: bool = True, dt: torch.Tensor | None = None):
        """x (batch, L, d_model); ``dt`` (batch, L): per-step time steps (cores with per_step_dt)."""
        check_seq("x", x, self.d_model, self.out_proj.weight.dtype)
        s = self._core_state(state, x.shape[0])
        y, s = self.core(x.transpose(1, 2), s, return_state, dt)  # (batch, d_model, L)
        return self._out(y.transpose(1, 2)), (self.state_type(s) if return_state else None)

    def step(self, x_t: torch.Tensor, state, dt: torch.Tensor | None = None):
        check_token("x_t", x_t, self.d_model, self.out_proj.weight.dtype)
        y, s = self.core.step(x_t, self._core_state(state, x_t.shape[0]), dt)
        return self._out(y), self.state_type(s)

    def init_state(self, batch_size: int, *, device=None, dtype=None):
        return self.state_type(self.core.init_state(batch_size, device=device, dtype=dtype))


class S4D(_CoreMixer):
    """S4D layer (Gu et al. 2022): diagonal SSM, default S4D-Lin init and ZOH as in s4d.py.
    Options: :class:`longssm.layers.options.S4DOptions`."""

    state_type = S4DState

    def __init__(self, d_model: int, **options):
        o = S4DOptions(**options)
        core = DiagonalCore(d_model, o.d_state, init=o.init, discretization=o.discretization, dt_min=o.dt_min,
                            dt_max=o.dt_max, ssm_lr=o.ssm_lr, chunk_size=o.chunk_size)
        super().__init__(d_model, maybe_smr(core, d_model, o), o.postact)


class S5(_CoreMixer):
    """S5 layer (Smith et al. 2023): the shared MIMO diagonal SSM (:class:`S5Core`), GELU and
    the output transform. Takes a per-step ``dt`` (batch, L). Options:
    :class:`longssm.layers.options.S5Options`."""

    state_type = S5State

    def __init__(self, d_model: int, **options):
        o = S5Options(**options)
        core = S5Core(d_model, o.d_state, init=o.init, dt_min=o.dt_min, dt_max=o.dt_max, ssm_lr=o.ssm_lr)
        super().__init__(d_model, maybe_smr(core, d_model, o), o.postact)


class ShiftSSM(_CoreMixer):
    """The shift SSM of H3 used on its own (a learned length-d_state causal filter per channel).
    Options: :class:`longssm.layers.options.ShiftOptions`."""

    state_type = ShiftState

    def __init__(self, d_model: int, **options):
        o = ShiftOptions(**options)
        super().__init__(d_model, ShiftCore(d_model, o.d_state, ssm_lr=o.ssm_lr), o.postact)
