"""The one optimisation core shared by language-model training and the synthetic tasks: AdamW
parameter groups from the layers' hints, the learning-rate schedule, and one optimiser step.
"""

from __future__ import annotations

import math
from typing import Iterable

import torch
from torch import nn


def param_groups(model: nn.Module | Iterable[nn.Parameter], lr: float, weight_decay: float) -> list[dict]:
    """AdamW parameter groups of a model (or of parameters in a given order): matrices decay,
    vectors (biases, norms, D) do not, hints override.

    Parameters with identical settings share a group; each group carries its ``lr`` and
    ``weight_decay`` explicitly, and its ``peak_lr`` for :func:`set_lr` to scale.
    """
    groups: dict[tuple[float, float], list[torch.Tensor]] = {}
    seen: set[int] = set()
    for p in (model.parameters() if isinstance(model, nn.Module) else model):
        if not p.requires_grad or id(p) in seen:
            continue
        seen.add(id(p))
        hint = getattr(p, "_optim", {})
        settings = (hint.get("lr", lr), hint.get("weight_decay", weight_decay if p.dim() >= 2 else 0.0))
        groups.setdefault(settings, []).append(p)
    return [{"params": ps, "lr": g_lr, "peak_lr": g_lr, "weight_decay": wd} for (g_lr, wd), ps in groups.items()]


def adamw(model: nn.Module, lr: float, weight_decay: float, betas=(0.9, 0.999), fused: bool = False):
    """AdamW over :func:`param_groups` (``fused``: one kernel per group, for dispatch-bound models)."""
    return torch.optim.AdamW(param_groups(model, lr, weight_decay), betas=betas, **({"fused": True} if fused else {}))


def lr_scale(step: int, warmup: int, total: int, min_ratio: float) -> float:
    """Multiplier of each group's peak lr at ``step`` (0-based): linear warm-up over ``warmup``
    steps, then cosine decay to ``min_ratio`` at ``total``."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def set_lr(optimizer: torch.optim.Optimizer, scale: float) -> None:
    for g in optimizer.param_groups:
        g["lr"] = g["peak_lr"] * scale


def optimizer_step(model: nn.Module, optimizer: torch.optim.Optimizer, grad_clip: float | None = None) -> float | None:
    """Clip (``grad_clip`` 0: measure the norm only; None: neither), step, zero the gradients.
    Returns the gradient norm before clipping, or None."""
    norm = None
    if grad_clip is not None:
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip or float("inf"))
        norm = (norm.full_tensor() if hasattr(norm, "full_tensor") else norm).item()  # a DTensor under FSDP
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return norm
