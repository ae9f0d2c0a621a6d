"""The language model: token embedding -> pre-norm blocks -> final norm -> head tied to the embedding.

Each block is ``x + mixer(norm(x))`` then ``x + MLP(norm(x))`` (GPT-2 / H3 layout). The model
state is a :class:`ModelState`: the tuple of the blocks' mixer states plus the number of tokens
seen (for learned absolute positions). ``model(input_ids, state) -> (logits, state)`` and
``model.step(token_ids, state) -> (logits, state)`` honour the mixers' contract one level up.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from longssm.layers import MIXERS, set_optim
from longssm.layers.state import map_tensors
from longssm.models.config import ModelConfig


class ModelState(NamedTuple):
    layers: tuple  # one mixer state per block
    pos: int  # tokens seen so far (the position of the next token)


class RMSNorm(nn.Module):
    def __init__(self, d: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def _norm(cfg: ModelConfig) -> nn.Module:
    return nn.LayerNorm(cfg.d_model, eps=cfg.norm_eps) if cfg.norm == "layernorm" else RMSNorm(cfg.d_model, cfg.norm_eps)


class MLP(nn.Module):
    def __init__(self, d_model: int, hidden: int, dropout: float):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(d_model, hidden), nn.Linear(hidden, d_model)
        self.fc2._residual = True
        self.drop = nn.Dropout(dropout)

    def forward(self, x):
        return self.drop(self.fc2(F.gelu(self.fc1(x))))


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig, mixer: str):
        super().__init__()
        self.norm1 = _norm(cfg)
        self.mixer = MIXERS[mixer](cfg.d_model, **dict(cfg.mixer_options.get(mixer, {})))
        hidden = round(cfg.mlp_ratio * cfg.d_model)
        self.norm2 = _norm(cfg) if hidden else None
        self.mlp = MLP(cfg.d_model, hidden, cfg.dropout) if hidden else None
        self.drop = nn.Dropout(cfg.dropout)

    def _mlp(self, x):
        return x if self.mlp is None else x + self.mlp(self.norm2(x))

    def forward(self, x, state=None, return_state=True):
        y, state = self.mixer(self.norm1(x), state, return_state=return_state)
        return self._mlp(x + self.drop(y)), state

    def step(self, x_t, state):
        y, state = self.mixer.step(self.norm1(x_t), state)
        return self._mlp(x_t + y), state


class LanguageModel(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.embedding = nn.Embedding(config.vocab_size, config.d_model)
        self.pos_embedding = (nn.Embedding(config.max_seq_len, config.d_model)
                              if config.pos_embedding == "learned" else None)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config, m) for m in config.mixers)
        self.norm = _norm(config)
        self.head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        if config.tie_embeddings:
            self.head.weight = self.embedding.weight
        # Embeddings take no weight decay, as in the reference optimiser grouping (state-spaces /
        # safari optim_groups: nn.Embedding is blacklisted). Decaying them starves a learned position
        # table whose only gradient is a weak attention signal: 2-layer attention then never forms
        # the previous-token head the induction-head task needs (11% instead of 100%).
        for emb in (self.embedding, self.pos_embedding):
            if emb is not None:
                set_optim(emb.weight, weight_decay=0.0)
        self._init_weights()

    def _init_weights(self):
        """GPT-2 init: Linear and Embedding weights ~ N(0, 0.02), biases 0, residual output
        projections (mixer out_proj, MLP fc2) scaled by 1/sqrt(2 n_layer). SSM parameters keep the
        initialisation of their papers (their modules are not Linear/Embedding)."""
        residual_std = 0.02 / math.sqrt(2 * self.config.n_layer)
        for name, module in self.named_modules():
            if isinstance(module, (nn.Linear, nn.Embedding)) and not getattr(module, "_no_reinit", False):
                is_residual = getattr(module, "_residual", False) or name.endswith("mixer.out_proj")
                nn.init.normal_(module.weight, std=residual_std if is_residual else 0.02)
                if getattr(module, "bias", None) is not None:
                    nn.init.zeros_(module.bias)

    def init_state(self, batch_size: int, *, device=None, dtype=None) -> ModelState:
        return ModelState(tuple(b.mixer.init_state(batch_size, device=device, dtype=dtype) for b in self.blocks), 0)

    def _check_ids(self, ids: torch.Tensor, rank: int, what: str):
        if not isinstance(ids, torch.Tensor) or ids.dtype not in (torch.int64, torch.int32):
            raise TypeError(f"{what} must be an integer (long) tensor")
        if ids.dim() != rank or (rank == 2 and ids.shape[1] == 0):
            shape = "(batch, seq_len >= 1)" if rank == 2 else "(batch,)"
            raise ValueError(f"{what} must have shape {shape}, got {tuple(ids.shape)}")
        if ids.numel() and (ids.min() < 0 or ids.max() >= self.config.vocab_size):
            raise ValueError(f"{what} contains ids outside [0, {self.config.vocab_size}): "
                             f"min {ids.min().item()}, max {ids.max().item()}")

    def _embed(self, ids: torch.Tensor, start: int) -> torch.Tensor:
        x = self.embedding(ids)
        if self.pos_embedding is not None:
            L = ids.shape[-1] if ids.dim() == 2 else 1
            if start + L > self.config.max_seq_len:
                raise ValueError(f"position {start + L - 1} is beyond max_seq_len="
                                 f"{self.config.max_seq_len} of the learned position embedding")
            pos = self.pos_embedding(torch.arange(start, start + L, device=ids.device))
            x = x + (pos if ids.dim() == 2 else pos[0])
        return self.drop(x)

    def _check_state(self, state, batch):
        if not isinstance(state, ModelState) or len(state.layers) != len(self.blocks):
            raise TypeError(f"state must be a ModelState with {len(self.blocks)} layer states "
                            f"(from model.init_state or a previous call), got {type(state).__name__}")

    def forward(self, input_ids: torch.Tensor, state: ModelState | None = None, *, return_state: bool = True):
        """input_ids (batch, seq_len) -> logits (batch, seq_len, vocab_size), new state (None with
        ``return_state=False``: no layer then computes its final state, which saves time and memory
        when nothing reads it, e.g. zero-state training and evaluation)."""
        self._check_ids(input_ids, 2, "input_ids")
        if state is not None:
            self._check_state(state, input_ids.shape[0])
        layer_states = state.layers if state is not None else (None,) * len(self.blocks)
        x = self._embed(input_ids, 0 if state is None else state.pos)  # (batch, seq_len, d_model)
        new_states = []
        for block, s in zip(self.blocks, layer_states):
            x, s = block(x, s, return_state)
            new_states.append(s)
        if not return_state:
            return self.head(self.norm(x)), None
        pos = (0 if state is None else state.pos) + input_ids.shape[1]
        return self.head(self.norm(x)), ModelState(tuple(new_states), pos)

    def step(self, token_ids: torch.Tensor, state: ModelState):
        """One token per row: token_ids (batch,) -> logits (batch, vocab_size), new state."""
        self._check_ids(token_ids, 1, "token_ids")
        self._check_state(state, token_ids.shape[0])
        x = self._embed(token_ids, state.pos)
        new_states = []
        for block, s in zip(self.blocks, state.layers):
            x, s = block.step(x, s)
            new_states.append(s)
        return self.head(self.norm(x)), ModelState(tuple(new_states), state.pos + 1)


def reset_rows(state: ModelState, reset: torch.Tensor) -> ModelState:
    """Zero the carried state of the rows where ``reset`` (batch,) is True (document starts).

    Used with carried (LongSSM) states; attention KV caches are not carried across training
    segments, so only fixed-size recurrent states reach here.
    """
    keep = (~reset).to(torch.float32)

    def zero(t: torch.Tensor) -> torch.Tensor:
        return t * keep.to(t.dtype if not t.is_complex() else torch.float32).view(-1, *([1] * (t.dim() - 1)))

    return ModelState(map_tensors(zero, state.layers), state.pos)


def count_parameters(model: nn.Module) -> int:
    """Unique parameters (a tied head counts once)."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
