"""Optimiser hints carried by parameters (as in s4/s4d.py).

SSM parameters (dt, A, B) train best with their own, smaller learning rate and no weight decay
(S4 section 4; the H3 configs use lr 1e-3 for them). A layer marks such a parameter with
``set_optim(p, lr=..., weight_decay=0.0)``; ``longssm.training.optim.param_groups`` turns the
marks into AdamW groups.
"""

from __future__ import annotations

from torch import nn


def set_optim(param: nn.Parameter, **hints: float) -> nn.Parameter:
    """Attach optimiser hints (keys ``lr``, ``weight_decay``) to a parameter and return it."""
    unknown = set(hints) - {"lr", "weight_decay"}
    if unknown:
        raise ValueError(f"unknown optimiser hints {sorted(unknown)}; allowed: lr, weight_decay")
    param._optim = dict(hints)
    return param
