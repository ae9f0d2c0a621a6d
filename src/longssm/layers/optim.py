"""Optimiser hints carried by parameters (as in s4/s4d.py) and the one function that reads them.

SSM parameters (dt, A, B) train best with their own, smaller learning rate and no weight decay
(S4 section 4; the H3 configs use lr 1e-3 for them). A layer marks such a parameter with
``set_optim(p, lr=..., weight_decay=0.0)``; :func:`param_groups` turns the marks into AdamW groups.
"""

from __future__ import annotations

import torch
from torch import nn


def set_optim(param: nn.Parameter, **hints: float) -> nn.Parameter:
    """Attach optimiser hints (keys ``lr``, ``weight_decay``) to a parameter and return it."""
    unknown = set(hints) - {"lr", "weight_decay"}
    if unknown:
        raise ValueError(f"unknown optimiser hints {sorted(unknown)}; allowed: lr, weight_decay")
    param._optim = dict(hints)
    return param


def param_groups(model: nn.Module, lr: float, weight_decay: float) -> list[dict]:
    """AdamW parameter groups: matrices decay, vectors (biases, norms, D) do not, hints override.

    Parameters with identical settings share a group; each group carries its ``lr`` and
    ``weight_decay`` explicitly so a scheduler can scale them together.
    """
    groups: dict[tuple[float, float], list[torch.Tensor]] = {}
    seen: set[int] = set()
    for p in model.parameters():
        if not p.requires_grad or id(p) in seen:
            continue
        seen.add(id(p))
        hint = getattr(p, "_optim", {})
        settings = (hint.get("lr", lr), hint.get("weight_decay", weight_decay if p.dim() >= 2 else 0.0))
        groups.setdefault(settings, []).append(p)
    return [{"params": ps, "lr": g_lr, "weight_decay": wd} for (g_lr, wd), ps in groups.items()]
