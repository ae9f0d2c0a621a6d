"""Stand-alone SSM sequence mixers: S4D and the shift SSM.

Both follow the S4D block (s4/models/s4/s4d.py): SSM convolution per channel with D skip, GELU,
then a position-wise output transform: Linear(d, 2d) + GLU (``postact="glu"``, s4d.py's default)
or a plain Linear(d, d) (``postact="linear"``, the safari configs the H3 paper's synthetic S4D
baseline ran with; the GLU's multiplicative gate is exactly what H3 argues plain SSMs lack).
Input and output (batch, L, d_model).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from longssm.kernels.checks import check_seq, check_token
from longssm.layers.ssm_conv import DiagonalSSMConv, ShiftSSMConv
from longssm.layers.state import check_state


class S4DState(NamedTuple):
    ssm: torch.Tensor  # (batch, d_model, d_state // 2) complex


class ShiftState(NamedTuple):
    window: torch.Tensor  # (batch, d_model, d_state): last d_state inputs, newest first


class _ConvSSMMixer(nn.Module):
    state_type: type

    def __init__(self, d_model: int, conv: nn.Module, postact: str = "glu"):
        super().__init__()
        if postact not in ("glu", "linear"):
            raise ValueError(f"postact must be 'glu' or 'linear', got {postact!r}")
        self.d_model, self.glu = d_model, postact == "glu"
        self.conv = conv
        self.out_proj = nn.Linear(d_model, (2 if self.glu else 1) * d_model)

    def _out(self, y):
        y = self.out_proj(F.gelu(y))
        return F.glu(y, dim=-1) if self.glu else y

    def _check_state(self, state, batch):
        if state is not None:
            check_state(type(self).__name__, state, self.state_type, batch)
            return state[0]
        return None

    def forward(self, x: torch.Tensor, state=None, *, return_state: bool = True):
        check_seq("x", x, self.d_model)
        s = self._check_state(state, x.shape[0])
        y, s = self.conv(x.transpose(1, 2), s, return_state)  # (batch, d_model, L)
        return self._out(y.transpose(1, 2)), (self.state_type(s) if return_state else None)

    def step(self, x_t: torch.Tensor, state):
        check_token("x_t", x_t, self.d_model)
        y, s = self.conv.step(x_t, self._check_state(state, x_t.shape[0]))
        return self._out(y), self.state_type(s)

    def init_state(self, batch_size: int, *, device=None, dtype=None):
        return self.state_type(self.conv.init_state(batch_size, device=device, dtype=dtype))


class S4D(_ConvSSMMixer):
    """S4D layer (Gu et al. 2022): diagonal SSM, default S4D-Lin init and ZOH as in s4d.py.
    Keyword options are those of :class:`DiagonalSSMConv`."""

    state_type = S4DState

    def __init__(self, d_model: int, d_state: int = 64, *, init: str = "lin",
                 discretization: str = "zoh", postact: str = "glu", **ssm_options):
        super().__init__(d_model, DiagonalSSMConv(d_model, d_state, init=init,
                                                  discretization=discretization, **ssm_options), postact)


class ShiftSSM(_ConvSSMMixer):
    """The shift SSM of H3 used on its own (a learned length-d_state causal filter per channel)."""

    state_type = ShiftState

    def __init__(self, d_model: int, d_state: int = 64, *, ssm_lr: float = 1e-3, postact: str = "glu"):
        super().__init__(d_model, ShiftSSMConv(d_model, d_state, ssm_lr=ssm_lr), postact)
