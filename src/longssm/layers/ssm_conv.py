"""Channel-first SSM convolutions with parameters: the building blocks of S4D, ShiftSSM and H3.

Both act on u (batch, H, L) and carry a state; the sequence mixers wrap them with projections.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from longssm.kernels.diagonal import (
    DISCRETIZATIONS, discretize, s4d_init_A, s4d_init_log_dt, ssm_conv, ssm_step,
)
from longssm.kernels.shift import shift_conv, shift_kernel, shift_step
from longssm.layers.optim import set_optim


class DiagonalSSMConv(nn.Module):
    """S4D diagonal SSM (Gu et al. 2022) per channel: ``d_state`` real state dimensions held as
    ``d_state // 2`` complex modes with their conjugates, plus the ``D`` skip.

    Parameters: log_dt (H,); A as ``-exp(A_log_re) + i A_im`` (H, N) so Re A < 0 stays stable; B
    and C complex (H, N) stored as real pairs; D (H,). dt, A and B take ``ssm_lr`` and no weight
    decay. State: (batch, H, N) complex.
    """

    def __init__(self, H: int, d_state: int = 64, *, init: str = "lin", discretization: str = "bilinear",
                 dt_min: float = 1e-3, dt_max: float = 1e-1, ssm_lr: float = 1e-3, chunk_size: int = 4096):
        super().__init__()
        if d_state < 2 or d_state % 2:
            raise ValueError(f"d_state must be an even integer >= 2 (conjugate pairs), got {d_state}")
        if discretization not in DISCRETIZATIONS:
            raise ValueError(f"discretization must be one of {DISCRETIZATIONS}, got {discretization!r}")
        self.H, self.N = H, d_state // 2
        self.discretization, self.chunk_size = discretization, chunk_size
        A = s4d_init_A(H, self.N, init)
        hint = dict(lr=ssm_lr, weight_decay=0.0)
        self.log_dt = set_optim(nn.Parameter(s4d_init_log_dt(H, dt_min, dt_max).float()), **hint)
        self.A_log_re = set_optim(nn.Parameter(torch.log(-A.real).float()), **hint)
        self.A_im = set_optim(nn.Parameter(A.imag.float()), **hint)
        self.B = set_optim(nn.Parameter(torch.view_as_real(torch.ones(H, self.N, dtype=torch.cfloat))), **hint)
        self.C = nn.Parameter(torch.view_as_real(torch.randn(H, self.N, dtype=torch.cfloat)))
        self.D = nn.Parameter(torch.randn(H))

    def discrete(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(dA, dB, 2C): the discrete system, C doubled for the conjugate modes."""
        A = torch.complex(-torch.exp(self.A_log_re), self.A_im)
        dA, dB = discretize(A, torch.view_as_complex(self.B), torch.exp(self.log_dt), self.discretization)
        return dA, dB, 2 * torch.view_as_complex(self.C)

    def forward(self, u: torch.Tensor, state: torch.Tensor | None = None, return_state: bool = True):
        dA, dB, C = self.discrete()
        return ssm_conv(u, dA, dB, C, self.D, state, self.chunk_size, return_state)

    def step(self, u_t: torch.Tensor, state: torch.Tensor | None):
        dA, dB, C = self.discrete()
        return ssm_step(u_t, state, dA, dB, C, self.D)

    def init_state(self, batch_size: int, *, device=None, dtype=None) -> torch.Tensor:
        dtype = torch.promote_types(dtype or self.D.dtype, torch.float32)
        cdtype = torch.complex128 if dtype == torch.float64 else torch.complex64
        return torch.zeros(batch_size, self.H, self.N, device=device or self.D.device, dtype=cdtype)


class ShiftSSMConv(nn.Module):
    """H3's shift SSM per channel (H3 section 3.1): B initialised to e1 (so the state is the last
    ``d_state`` inputs), C initialised like a depthwise Conv1d weight, plus the ``D`` skip.
    B takes ``ssm_lr`` and no weight decay. State: the window of the last d_state inputs."""

    def __init__(self, H: int, d_state: int = 64, *, ssm_lr: float = 1e-3):
        super().__init__()
        self.H, self.N = H, d_state
        B = torch.zeros(H, d_state)
        B[:, 0] = 1.0
        self.B = set_optim(nn.Parameter(B), lr=ssm_lr, weight_decay=0.0)
        bound = 1 / math.sqrt(d_state)
        self.C = nn.Parameter(torch.empty(H, d_state).uniform_(-bound, bound))
        self.D = nn.Parameter(torch.randn(H))

    def forward(self, u: torch.Tensor, state: torch.Tensor | None = None, return_state: bool = True):
        return shift_conv(u, shift_kernel(self.B, self.C), self.D, state, return_state)

    def step(self, u_t: torch.Tensor, state: torch.Tensor | None):
        return shift_step(u_t, state, shift_kernel(self.B, self.C), self.D)

    def init_state(self, batch_size: int, *, device=None, dtype=None) -> torch.Tensor:
        return torch.zeros(batch_size, self.H, self.N, device=device or self.D.device, dtype=dtype or self.D.dtype)
