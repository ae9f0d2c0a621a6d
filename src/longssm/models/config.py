"""Model configuration: a frozen dataclass with a docstring line per field, validated on creation.

Configs round-trip through plain dicts (TOML run files, checkpoint records); unknown keys and
wrong types are errors that name the key and what was expected.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping

from longssm.configs import build
from longssm.kernels.backend import BACKENDS
from longssm.layers import MIXER_OPTIONS, MIXERS

NORMS = ("layernorm", "rmsnorm")
POSITIONS = ("none", "learned")


@dataclass(frozen=True)
class ModelConfig:
    """A language model: embedding -> n_layer pre-norm blocks (mixer, MLP) -> norm -> tied head."""

    vocab_size: int = 256
    """Number of token ids; inputs must lie in [0, vocab_size)."""
    d_model: int = 128
    """Width of the residual stream."""
    n_layer: int = 4
    """Number of blocks."""
    mixers: tuple[str, ...] = ("h3", "h3", "h3", "h3")
    """Sequence mixer of each block, one of longssm.layers.MIXERS; length n_layer."""
    mixer_options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """Options per mixer name, e.g. {"attention": {"n_heads": 4}, "h3": {"d_state": 64}}; the keys
    of each are the fields of its dataclass in longssm.layers.options (`longssm train --help`)."""
    mlp_ratio: float = 4.0
    """MLP hidden width / d_model; 0 disables the MLP (Mamba-style blocks)."""
    norm: str = "layernorm"
    """Normalisation: layernorm or rmsnorm."""
    norm_eps: float = 1e-5
    """Epsilon of the norms."""
    tie_embeddings: bool = True
    """Share the LM head with the token embedding."""
    dropout: float = 0.0
    """Dropout on the embedding and on each residual branch."""
    pos_embedding: str = "none"
    """Absolute positions: none (mixers carry order; attention uses rotary) or learned."""
    max_seq_len: int = 2048
    """Longest sequence with learned positions (ignored when pos_embedding is none)."""
    backend: str = "auto"
    """Kernel backend of the SSM cores: auto (fast pure-PyTorch path; $LONGSSM_BACKEND overrides), ref,
    compile (torch.compile'd selective scan) or native (the C++ selective scan, built on first use)."""

    def __post_init__(self):
        ints = {"vocab_size": self.vocab_size, "d_model": self.d_model, "n_layer": self.n_layer,
                "max_seq_len": self.max_seq_len}
        for name, value in ints.items():
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"model.{name} must be a positive integer, got {value!r}")
        object.__setattr__(self, "mixers", tuple(self.mixers))
        if len(self.mixers) != self.n_layer:
            raise ValueError(f"model.mixers must name one mixer per layer (n_layer={self.n_layer}), "
                             f"got {len(self.mixers)}")
        for name in self.mixers:
            if name not in MIXERS:
                raise ValueError(f"unknown mixer {name!r} in model.mixers; allowed: {sorted(MIXERS)}")
        for name, opts in self.mixer_options.items():
            if name not in MIXERS:
                raise ValueError(f"unknown mixer {name!r} in model.mixer_options; allowed: {sorted(MIXERS)}")
            if not isinstance(opts, Mapping):
                raise ValueError(f"model.mixer_options.{name} must be a table of options")
            build(MIXER_OPTIONS[name], opts, f"model.mixer_options.{name}")  # unknown keys, wrong types
        if self.norm not in NORMS:
            raise ValueError(f"model.norm must be one of {NORMS}, got {self.norm!r}")
        if self.pos_embedding not in POSITIONS:
            raise ValueError(f"model.pos_embedding must be one of {POSITIONS}, got {self.pos_embedding!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"model.dropout must be in [0, 1), got {self.dropout!r}")
        if self.backend not in BACKENDS:
            raise ValueError(f"model.backend must be one of {BACKENDS}, got {self.backend!r}")
        if self.mlp_ratio < 0:
            raise ValueError(f"model.mlp_ratio must be >= 0, got {self.mlp_ratio!r}")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["mixers"] = list(self.mixers)
        d["mixer_options"] = {k: dict(v) for k, v in self.mixer_options.items()}
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ModelConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown model config keys {unknown}; allowed: {sorted(known)}")
        return cls(**d)
