"""Sequence mixers under one state contract (DESIGN.md): ``forward(x, state=None) -> (y, state)``,
``step(x_t, state) -> (y_t, state)``, ``init_state(batch_size, *, device, dtype)``."""

from longssm.layers.attention import Attention, KVCache
from longssm.layers.conv_mixers import S4D, S4DState, ShiftSSM, ShiftState
from longssm.layers.h3 import H3, H3State
from longssm.layers.optim import param_groups, set_optim
from longssm.layers.selective import MambaState, SelectiveSSM
from longssm.layers.ssm_conv import DiagonalSSMConv, ShiftSSMConv
from longssm.layers.state import detach_state, map_tensors

#: Mixer names used by model configs, e.g. ("h3", "attention", "h3").
MIXERS = {
    "h3": H3,
    "s4d": S4D,
    "shift": ShiftSSM,
    "mamba": SelectiveSSM,
    "attention": Attention,
}

__all__ = [
    "MIXERS", "Attention", "KVCache", "S4D", "S4DState", "ShiftSSM", "ShiftState", "H3", "H3State",
    "SelectiveSSM", "MambaState", "DiagonalSSMConv", "ShiftSSMConv", "param_groups", "set_optim",
    "detach_state", "map_tensors",
]
