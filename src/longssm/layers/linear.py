"""``nn.Linear`` that follows the kernel backend: with ``native`` it decodes through the package's
C++ matrix-vector kernel on CPU (:mod:`longssm.kernels.native_linear`); otherwise it is
``F.linear``. Same parameters and state-dict keys as ``nn.Linear``; :func:`longssm.layers.configure`
sets the backend of every one inside a module, as it does for the SSM cores."""

from __future__ import annotations

import torch
from torch import nn

from longssm.kernels.backend import get_op


class Linear(nn.Linear):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.backend = "auto"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return get_op("linear", self.backend)(x, self.weight, self.bias)
