"""Models: heads on the :class:`~longssm.models.backbone.Backbone`.

* :class:`LanguageModel`: the LM head, tied to the token embedding by default.
  ``model(input_ids, state) -> (logits, state)`` and ``model.step(token_ids, state) -> (logits,
  state)`` honour the mixers' contract one level up.
* :class:`SequenceClassifier`: mean-pooled hidden states over the non-padding tokens, then a linear
  classifier (for Long Range Arena-style tasks): ``model(input_ids, mask) -> logits (batch, n_classes)``.
"""

from __future__ import annotations

import torch
from torch import nn

from longssm.kernels.backend import resolve
from longssm.layers import configure
from longssm.layers.linear import Linear
from longssm.layers.state import rename_on_load
from longssm.models.backbone import Backbone
from longssm.models.config import ModelConfig
from longssm.models.state import ModelState


class LanguageModel(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.backbone = Backbone(config)
        self.head = Linear(config.d_model, config.vocab_size, bias=False)
        if config.tie_embeddings:
            self.head.weight = self.backbone.embedding.weight
        configure(self.head, backend=config.backend)
        self.reset_parameters()
        # checkpoints before the backbone/head split kept the backbone's modules at the top
        rename_on_load(self, {k: "backbone." + k for k in ("embedding.", "pos_embedding.", "blocks.", "norm.")})

    @property
    def carried(self) -> tuple[bool, ...]:
        return self.backbone.carried

    def reset_parameters(self) -> None:
        """The backbone's GPT-2 init, then the head's N(0, 0.02): drawn last, even when tied to the
        embedding (so the embedding holds this draw), which keeps seeds reproducing earlier runs."""
        self.backbone.reset_parameters()
        nn.init.normal_(self.head.weight, std=0.02)

    def init_state(self, batch_size: int, *, device=None, dtype=None) -> ModelState:
        return self.backbone.init_state(batch_size, device=device, dtype=dtype)

    def forward(self, input_ids: torch.Tensor, state: ModelState | None = None, *, return_state: bool = True,
                dt: torch.Tensor | None = None):
        """input_ids (batch, seq_len) -> logits (batch, seq_len, vocab_size), new state (None with
        ``return_state=False``: no layer then computes its final state, which saves time and memory
        when nothing reads it, e.g. zero-state training and evaluation). ``dt``: see Backbone."""
        x, state = self.backbone(input_ids, state, return_state=return_state, dt=dt)
        return self.head(x), state

    def step(self, token_ids: torch.Tensor, state: ModelState):
        """One token per row: token_ids (batch,) -> logits (batch, vocab_size), new state."""
        x, state = self.backbone.step(token_ids, state)
        return self._head_step(x), state

    def _head_step(self, x: torch.Tensor) -> torch.Tensor:
        """The head on one token per row. With the native backend it is the head's own (C++
        matrix-vector kernel). Otherwise, on CPU without autograd it multiplies by a cached
        (d_model, vocab) copy of the weight: PyTorch's CPU matrix-vector product reads the
        (vocab, d_model) layout of ``nn.Linear`` at ~16 GB/s and this one at ~27 GB/s, 1.7x faster
        for GPT-2's vocabulary at batch 1 (BENCHMARKS.md). The copy is remade whenever the weight
        changes (storage, in-place version, dtype); FSDP-managed models keep the plain path."""
        w = self.head.weight
        if (w.device.type != "cpu" or (torch.is_grad_enabled() and w.requires_grad) or hasattr(self, "unshard")
                or resolve(self.head.backend) == "native"):
            return self.head(x)
        key = (w.data_ptr(), w._version, w.dtype)
        if getattr(self, "_head_t_key", None) != key:
            self._head_t, self._head_t_key = w.detach().t().contiguous(), key
        return x @ self._head_t


class SequenceClassifier(nn.Module):
    """Backbone, mean over the tokens where ``mask`` is True (padding excluded), linear classifier.

    Inputs are token ids, or with ``d_input`` real-valued sequences (batch, seq_len, d_input)
    that a linear encoder lifts to d_model (pixels, sampled signals). Padding is right-padding:
    with a mask the padded positions come after a row's tokens, so the causal mixers never let
    padding reach the real tokens' hidden states.
    """

    def __init__(self, config: ModelConfig, n_classes: int, d_input: int | None = None):
        super().__init__()
        if n_classes < 2:
            raise ValueError(f"n_classes must be >= 2, got {n_classes}")
        self.config, self.d_input = config, d_input
        self.encoder = None if d_input is None else nn.Linear(d_input, config.d_model)
        self.backbone = Backbone(config)
        self.head = nn.Linear(config.d_model, n_classes)
        self.backbone.reset_parameters()
        nn.init.normal_(self.head.weight, std=0.02)
        nn.init.zeros_(self.head.bias)

    def forward(self, inputs: torch.Tensor, mask: torch.Tensor | None = None, *,
                dt: torch.Tensor | None = None) -> torch.Tensor:
        """inputs: ids (batch, seq_len), or (batch, seq_len, d_input) floats with ``d_input``;
        mask (batch, seq_len) bool or None; dt (batch, seq_len) per-step time steps or None
        -> logits (batch, n_classes)."""
        if self.encoder is None:
            x, _ = self.backbone(inputs, return_state=False, dt=dt)  # (batch, seq_len, d_model)
        else:
            if not inputs.is_floating_point() or inputs.dim() != 3 or inputs.shape[-1] != self.d_input:
                raise ValueError(f"inputs must be floats of shape (batch, seq_len, {self.d_input}), "
                                 f"got {inputs.dtype} {tuple(inputs.shape)}")
            x, _ = self.backbone(embeds=self.encoder(inputs), return_state=False, dt=dt)
        if mask is None:
            return self.head(x.mean(1))
        if mask.shape != x.shape[:2] or mask.dtype != torch.bool:
            raise ValueError(f"mask must be a bool tensor of shape {tuple(x.shape[:2])}, "
                             f"got {mask.dtype} {tuple(mask.shape)}")
        counts = mask.sum(1, keepdim=True)
        if bool((counts == 0).any()):
            raise ValueError("every row of mask needs at least one True (non-padding) token")
        pooled = (x * mask[..., None].to(x.dtype)).sum(1) / counts.to(x.dtype)
        return self.head(pooled)


def count_parameters(model: nn.Module) -> int:
    """Unique parameters (a tied head counts once)."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
