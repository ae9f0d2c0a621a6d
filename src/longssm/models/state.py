"""The model state, in one home: its type, and what training and evaluation do with it.

A :class:`ModelState` is the tuple of the blocks' mixer states plus the number of tokens seen.
Whether a layer's state is carried across training segments (LongSSM's previous-initialised
states) is a property each mixer declares (``carries_state``: fixed-size recurrent states yes,
attention's growing KV cache no), read here through the model's ``carried`` flags.

For checkpoints a state is written field by field (:func:`state_tensors`: dotted paths to tensors)
and read back into the structure of the model's own zero state (:func:`load_state_tensors`), so a
checkpoint never depends on where a state class lives.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch

from longssm.layers.attention import KVCache
from longssm.layers.state import detach_state, map_tensors


class ModelState(NamedTuple):
    layers: tuple  # one mixer state per block (None for a layer whose state is not carried)
    pos: int  # tokens seen so far (the position of the next token)


def carry(state: ModelState, carried: tuple[bool, ...]) -> ModelState:
    """The state handed to the next training segment: detached, non-carried layers dropped, the
    position restarted (each segment starts its own positions)."""
    return ModelState(tuple(detach_state(s) if c else None for s, c in zip(state.layers, carried)), 0)


def bound_context(state: ModelState, tokens: int) -> ModelState:
    """Attention layers keep only the last ``tokens`` of their KV cache (a fixed-size state like
    the SSM layers', which keep everything they were given through their recurrence)."""
    return ModelState(tuple(s.last(tokens) if isinstance(s, KVCache) else s for s in state.layers), state.pos)


def reset_rows(state: ModelState, reset: torch.Tensor) -> ModelState:
    """Zero the carried state of the rows where ``reset`` (batch,) is True (document starts)."""
    keep = (~reset).to(torch.float32)

    def zero(t: torch.Tensor) -> torch.Tensor:
        return t * keep.to(t.dtype if not t.is_complex() else torch.float32).view(-1, *([1] * (t.dim() - 1)))

    return ModelState(map_tensors(zero, state.layers), state.pos)


def to_device(state: Any, device) -> Any:
    return map_tensors(lambda t: t.to(device), state)


def noise_state(zero: ModelState, carried: tuple[bool, ...], rows: slice, std: float, seed: int,
                device) -> ModelState:
    """Gaussian states shaped like ``zero`` (the zero state of the global batch, so any process
    split sees the same rows), sliced to ``rows``; complex fields get unit-variance complex noise."""
    g = torch.Generator().manual_seed(seed)

    def draw(t: torch.Tensor) -> torch.Tensor:
        if t.numel() == 0:
            return t[rows].to(device)
        if t.is_complex():
            z = torch.complex(torch.randn(t.shape, generator=g), torch.randn(t.shape, generator=g)) / 2**0.5
            return (z.to(t.dtype) * std)[rows].to(device)
        return (torch.randn(t.shape, generator=g, dtype=t.dtype) * std)[rows].to(device)

    return ModelState(tuple(map_tensors(draw, s) if c else None for s, c in zip(zero.layers, carried)), 0)


def _paths(state: Any, prefix: str):
    """(dotted path, leaf) for every tensor or None leaf of a nested state."""
    if isinstance(state, tuple) and hasattr(state, "_fields"):
        for name, value in zip(state._fields, state):
            yield from _paths(value, f"{prefix}{name}.")
    elif isinstance(state, (tuple, list)):
        for i, value in enumerate(state):
            yield from _paths(value, f"{prefix}{i}.")
    elif isinstance(state, torch.Tensor) or state is None:
        yield prefix[:-1], state


def state_tensors(state: Any) -> dict[str, torch.Tensor]:
    """The tensors of a (nested) state by dotted field path, e.g. ``layers.0.shift``."""
    return {path: t for path, t in _paths(state, "") if t is not None}


def load_state_tensors(template: Any, tensors: dict[str, torch.Tensor], what: str = "state") -> Any:
    """``template`` (a zero state of the right structure) with every tensor replaced by the one at
    its path in ``tensors``; a path without a tensor makes that field None (a state not carried).
    A tensor whose shape differs from the template's, or one with no place, is an error."""
    unused = set(tensors) - {p for p, _ in _paths(template, "")}
    if unused:
        raise ValueError(f"{what}: fields {sorted(unused)[:5]} do not exist in this model's state")
    leaves = iter(_paths(template, ""))

    def fill(node):
        if isinstance(node, tuple) and hasattr(node, "_fields"):
            return type(node)(*(fill(v) for v in node))
        if isinstance(node, (tuple, list)):
            return type(node)(fill(v) for v in node)
        if isinstance(node, torch.Tensor) or node is None:
            path, _ = next(leaves)
            t = tensors.get(path)
            if t is not None and node is not None and t.shape != node.shape:
                raise ValueError(f"{what}: field {path} has shape {tuple(t.shape)}, expected {tuple(node.shape)}")
            return t
        return node

    return fill(template)
