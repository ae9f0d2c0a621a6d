"""Typed mixer states and the helpers that treat them as values (never mutated in place).

Every state is a NamedTuple of tensors (plus plain ints); a model state is a tuple of them.
"""

from __future__ import annotations

from typing import Any, Callable

import torch


def map_tensors(fn: Callable[[torch.Tensor], torch.Tensor], state: Any) -> Any:
    """Apply ``fn`` to every tensor inside a (nested) state, keeping its type."""
    if isinstance(state, torch.Tensor):
        return fn(state)
    if isinstance(state, tuple) and hasattr(state, "_fields"):
        return type(state)(*(map_tensors(fn, s) for s in state))
    if isinstance(state, (tuple, list)):
        return type(state)(map_tensors(fn, s) for s in state)
    return state


def detach_state(state: Any) -> Any:
    """Cut the autograd graph between training segments (LongSSM's detached carried state)."""
    return map_tensors(torch.Tensor.detach, state)


def check_state(owner: str, state: Any, cls: type, batch: int) -> None:
    """TypeError for a state of the wrong mixer type, ValueError for a wrong batch size."""
    if not isinstance(state, cls):
        raise TypeError(f"{owner} expects a {cls.__name__} state, got {type(state).__name__}")
    for name, value in zip(state._fields, state):
        if isinstance(value, torch.Tensor) and value.shape[0] != batch:
            raise ValueError(
                f"{owner}: state field {name!r} has batch {value.shape[0]}, input has batch {batch}"
            )
