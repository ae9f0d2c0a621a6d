"""Typed mixer states and the helpers that treat them as values (never mutated in place).

Every state is a NamedTuple of tensors, nested states (a core's state inside a mixer's) and plain
ints; a model state is a tuple of them.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn


def map_tensors(fn: Callable[[torch.Tensor], torch.Tensor], state: Any) -> Any:
    """Apply ``fn`` to every tensor inside a (nested) state, keeping its type."""
    if isinstance(state, torch.Tensor):
        return fn(state)
    if isinstance(state, tuple) and hasattr(state, "_fields"):
        return type(state)(*(map_tensors(fn, s) for s in state))
    if isinstance(state, (tuple, list)):
        return type(state)(map_tensors(fn, s) for s in state)
    return state


def tensors(state: Any) -> list[torch.Tensor]:
    """Every tensor inside a (nested) state, in field order."""
    found: list[torch.Tensor] = []
    map_tensors(lambda t: found.append(t) or t, state)
    return found


def detach_state(state: Any) -> Any:
    """Cut the autograd graph between training segments (LongSSM's detached carried state)."""
    return map_tensors(torch.Tensor.detach, state)


def check_state(owner: str, state: Any, cls: type, batch: int) -> None:
    """TypeError for a state of the wrong mixer type, ValueError for a wrong batch size."""
    if not isinstance(state, cls):
        raise TypeError(f"{owner} expects a {cls.__name__} state, got {type(state).__name__}")
    for name, value in zip(state._fields, state):
        for t in tensors(value):
            if t.shape[0] != batch:
                raise ValueError(f"{owner}: state field {name!r} has batch {t.shape[0]}, input has batch {batch}")


def rename_on_load(module: nn.Module, renames: dict[str, str]) -> None:
    """Let ``module`` load state dicts written before a parameter moved: a key under the module
    that starts with an old prefix (relative to the module) is renamed to the new one."""

    def hook(state_dict, prefix, *_):
        for key in [k for k in state_dict if k.startswith(prefix)]:
            rest = key[len(prefix):]
            for old, new in renames.items():
                if rest.startswith(old) and prefix + new + rest[len(old):] not in state_dict:
                    state_dict[prefix + new + rest[len(old):]] = state_dict.pop(key)
                    break

    module._register_load_state_dict_pre_hook(hook)
