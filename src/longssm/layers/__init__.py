"""Sequence mixers under one state contract (docs/architecture.md): ``forward(x, state=None) -> (y, state)``,
``step(x_t, state) -> (y_t, state)``, ``init_state(batch_size, *, device, dtype)``; the SSM cores
they compose (``longssm.layers.cores``) and the options of each (``longssm.layers.options``)."""

from longssm.layers.attention import Attention, KVCache
from longssm.layers.conv_mixers import S4D, S5, S4DState, S5State, ShiftSSM, ShiftState
from longssm.layers.cores import Core, DiagonalCore, SelectiveCore, ShiftCore, configure
from longssm.layers.h3 import H3, H3State
from longssm.layers.linear import Linear
from longssm.layers.optim import set_optim
from longssm.layers.options import AttentionOptions, H3Options, MambaOptions, S4DOptions, S5Options, ShiftOptions
from longssm.layers.s5 import S5Core
from longssm.layers.smr import SMRCore, SMRState
from longssm.layers.selective import MambaState, SelectiveSSM
from longssm.layers.state import detach_state, map_tensors

#: Mixer names used by model configs, e.g. ("h3", "attention", "h3").
MIXERS = {
    "h3": H3,
    "s4d": S4D,
    "s5": S5,
    "shift": ShiftSSM,
    "mamba": SelectiveSSM,
    "attention": Attention,
}

#: The options dataclass of each mixer name (what ``model.mixer_options.NAME`` may hold).
MIXER_OPTIONS = {
    "h3": H3Options,
    "s4d": S4DOptions,
    "s5": S5Options,
    "shift": ShiftOptions,
    "mamba": MambaOptions,
    "attention": AttentionOptions,
}

__all__ = [
    "MIXERS", "MIXER_OPTIONS", "Attention", "KVCache", "S4D", "S4DState", "S5", "S5State", "S5Core",
    "SMRCore", "SMRState", "ShiftSSM", "ShiftState",
    "H3", "H3State", "SelectiveSSM", "MambaState", "Core", "DiagonalCore", "ShiftCore", "SelectiveCore",
    "configure", "set_optim", "detach_state", "map_tensors", "Linear",
]
