"""Hidden-state initialisation schemes for training segments (train.state_init).

* ``zero``: every segment starts from the zero state (the usual training).
* ``previous`` (LongSSM, Wang 2024, section 4): the final state of segment k, detached, starts
  segment k+1 of the same stream; zeroed at document starts and at each pass over the data.
* ``noise``: Gaussian initial states (a baseline the LongSSM paper compares against).

Attention KV caches are never carried across training segments (they would grow without bound);
only the fixed-size recurrent states are.
"""

from __future__ import annotations

import torch

from longssm.layers import KVCache
from longssm.layers.state import detach_state, map_tensors
from longssm.models import LanguageModel, ModelState


def carry(state: ModelState) -> ModelState:
    """The state handed to the next segment: detached, attention caches dropped."""
    layers = tuple(None if isinstance(s, KVCache) else detach_state(s) for s in state.layers)
    return ModelState(layers, 0)


def noise_state(model: LanguageModel, global_batch: int, rows: slice, std: float, seed: int,
                device, dtype) -> ModelState:
    """Gaussian states for the global batch (so any process split sees the same rows), sliced."""
    g = torch.Generator().manual_seed(seed)
    zero = model.init_state(global_batch, device="cpu", dtype=dtype)

    def draw(t: torch.Tensor) -> torch.Tensor:
        if t.numel() == 0:
            return t[rows].to(device)
        if t.is_complex():
            z = torch.complex(torch.randn(t.shape, generator=g), torch.randn(t.shape, generator=g)) / 2**0.5
            return (z.to(t.dtype) * std)[rows].to(device)
        return (torch.randn(t.shape, generator=g, dtype=t.dtype) * std)[rows].to(device)

    layers = tuple(None if isinstance(s, KVCache) else map_tensors(draw, s) for s in zero.layers)
    return ModelState(layers, 0)
