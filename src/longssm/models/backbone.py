"""The backbone: token embedding -> pre-norm blocks -> final norm, returning hidden states.

Each block is ``x + mixer(norm(x))`` then ``x + MLP(norm(x))`` (GPT-2 / H3 layout). The backbone's
state is a :class:`~longssm.models.state.ModelState`: the blocks' mixer states plus the number of
tokens seen (for learned absolute positions). Heads (``longssm.models.model``) sit on top.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from longssm.layers import MIXERS, configure, set_optim
from longssm.layers.linear import Linear
from longssm.models.config import ModelConfig
from longssm.models.state import ModelState


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
        self.fc1, self.fc2 = Linear(d_model, hidden), Linear(hidden, d_model)
        self.drop = nn.Dropout(dropout)

    def reset_parameters(self, *, std: float = 0.02, residual_std: float = 0.02) -> None:
        """GPT-2 init; fc2 is a residual branch's output."""
        for lin, s in ((self.fc1, std), (self.fc2, residual_std)):
            nn.init.normal_(lin.weight, std=s)
            nn.init.zeros_(lin.bias)

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

    def reset_parameters(self, *, std: float, residual_std: float) -> None:
        for m in (self.mixer, self.mlp):
            if m is not None:
                m.reset_parameters(std=std, residual_std=residual_std)

    def _mlp(self, x):
        return x if self.mlp is None else x + self.mlp(self.norm2(x))

    checkpointing = False  # recompute this block's activations in backward (set_activation_checkpointing)

    def forward(self, x, state=None, return_state=True, dt=None):
        if self.checkpointing and torch.is_grad_enabled():
            # non-reentrant: the state passes through as it is; dropout's RNG state is replayed
            return checkpoint(self._forward, x, state, return_state, dt, use_reentrant=False)
        return self._forward(x, state, return_state, dt)

    def _forward(self, x, state, return_state, dt):
        kw = {} if dt is None else {"dt": dt}
        y, state = self.mixer(self.norm1(x), state, return_state=return_state, **kw)
        return self._mlp(x + self.drop(y)), state

    def step(self, x_t, state, dt=None):
        y, state = self.mixer.step(self.norm1(x_t), state, **({} if dt is None else {"dt": dt}))
        return self._mlp(x_t + y), state


def check_seq_embeds(x: torch.Tensor, d_model: int) -> None:
    if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.dim() != 3 or x.shape[-1] != d_model \
            or x.shape[1] == 0:
        raise ValueError(f"embeds must be a floating tensor of shape (batch, seq_len >= 1, {d_model}), "
                         f"got {getattr(x, 'dtype', type(x).__name__)} {tuple(getattr(x, 'shape', ()))}")


def check_ids(ids: torch.Tensor, rank: int, what: str, vocab_size: int) -> None:
    if not isinstance(ids, torch.Tensor) or ids.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"{what} must be an integer (long) tensor")
    if ids.dim() != rank or (rank == 2 and ids.shape[1] == 0):
        shape = "(batch, seq_len >= 1)" if rank == 2 else "(batch,)"
        raise ValueError(f"{what} must have shape {shape}, got {tuple(ids.shape)}")
    if ids.numel() and (ids.min() < 0 or ids.max() >= vocab_size):
        raise ValueError(f"{what} contains ids outside [0, {vocab_size}): min {ids.min().item()}, max {ids.max().item()}")


def set_activation_checkpointing(model: nn.Module, on: bool = True) -> None:
    """Recompute every block's activations in backward (training with less memory)."""
    for m in model.modules():
        if isinstance(m, Block):
            m.checkpointing = on


class Backbone(nn.Module):
    """``backbone(input_ids, state) -> (hidden (batch, seq_len, d_model), state)`` and
    ``backbone.step(token_ids, state) -> (hidden (batch, d_model), state)``."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.embedding = nn.Embedding(config.vocab_size, config.d_model)
        self.pos_embedding = (nn.Embedding(config.max_seq_len, config.d_model)
                              if config.pos_embedding == "learned" else None)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config, m) for m in config.mixers)
        self.norm = _norm(config)
        # Embeddings take no weight decay, as in the reference optimiser grouping (state-spaces /
        # safari optim_groups: nn.Embedding is blacklisted). Decaying them starves a learned position
        # table whose only gradient is a weak attention signal: 2-layer attention then never forms
        # the previous-token head the induction-head task needs (11% instead of 100%).
        for emb in (self.embedding, self.pos_embedding):
            if emb is not None:
                set_optim(emb.weight, weight_decay=0.0)
        configure(self, backend=config.backend)

    @property
    def carried(self) -> tuple[bool, ...]:
        """Per block: is its mixer's state carried across training segments?"""
        return tuple(b.mixer.carries_state for b in self.blocks)

    def reset_parameters(self) -> None:
        """GPT-2 init: embeddings and projections ~ N(0, 0.02), biases 0, the projections that end
        a residual branch at 0.02 / sqrt(2 n_layer). SSM cores keep their papers' initialisation."""
        std, residual_std = 0.02, 0.02 / math.sqrt(2 * self.config.n_layer)
        for emb in (self.embedding, self.pos_embedding):
            if emb is not None:
                nn.init.normal_(emb.weight, std=std)
        for block in self.blocks:
            block.reset_parameters(std=std, residual_std=residual_std)

    def init_state(self, batch_size: int, *, device=None, dtype=None) -> ModelState:
        return ModelState(tuple(b.mixer.init_state(batch_size, device=device, dtype=dtype) for b in self.blocks), 0)

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

    def _check_state(self, state):
        if not isinstance(state, ModelState) or len(state.layers) != len(self.blocks):
            raise TypeError(f"state must be a ModelState with {len(self.blocks)} layer states "
                            f"(from model.init_state or a previous call), got {type(state).__name__}")

    def _check_dt(self, dt, shape):
        if dt is None:
            return
        if tuple(dt.shape) != tuple(shape) or not dt.is_floating_point():
            raise ValueError(f"dt must be a floating tensor of shape {tuple(shape)}, got {dt.dtype} {tuple(dt.shape)}")
        fixed = sorted({b.mixer.__class__.__name__ for b in self.blocks if not getattr(b.mixer, "per_step_dt", False)})
        if fixed:
            raise ValueError(f"a per-step dt needs mixers that take one (S5, the selective SSM, H3 with an S5 "
                             f"long core); {', '.join(fixed)} do not: give them the mean step with dt_scale")

    def forward(self, input_ids: torch.Tensor | None = None, state: ModelState | None = None, *,
                return_state: bool = True, dt: torch.Tensor | None = None, embeds: torch.Tensor | None = None):
        """input_ids (batch, seq_len), or ``embeds`` (batch, seq_len, d_model) for inputs that are
        not tokens -> hidden (batch, seq_len, d_model), new state (None with ``return_state=False``:
        no layer then computes its final state). ``dt`` (batch, seq_len): per-step time steps
        (non-uniformly sampled inputs), for models whose mixers all take one."""
        if (input_ids is None) == (embeds is None):
            raise ValueError("give exactly one of input_ids and embeds")
        if state is not None:
            self._check_state(state)
        start = 0 if state is None else state.pos
        if embeds is None:
            check_ids(input_ids, 2, "input_ids", self.config.vocab_size)
            x = self._embed(input_ids, start)  # (batch, seq_len, d_model)
        else:
            check_seq_embeds(embeds, self.config.d_model)
            x = self.drop(embeds)
        self._check_dt(dt, x.shape[:2])
        layer_states = state.layers if state is not None else (None,) * len(self.blocks)
        new_states = []
        for block, s in zip(self.blocks, layer_states):
            x, s = block(x, s, return_state, dt)
            new_states.append(s)
        x = self.norm(x)
        return x, (ModelState(tuple(new_states), start + x.shape[1]) if return_state else None)

    def step(self, token_ids: torch.Tensor, state: ModelState):
        """One token per row: token_ids (batch,) -> hidden (batch, d_model), new state."""
        check_ids(token_ids, 1, "token_ids", self.config.vocab_size)
        self._check_state(state)
        x = self._embed(token_ids, state.pos)
        new_states = []
        for block, s in zip(self.blocks, state.layers):
            x, s = block.step(x, s)
            new_states.append(s)
        return self.norm(x), ModelState(tuple(new_states), state.pos + 1)
