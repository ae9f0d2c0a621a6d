"""The S5 core (Smith, Warrington, Linderman, "Simplified State Space Layers for Sequence
Modeling", ICLR 2023): one MIMO diagonal SSM shared by all H channels.

    x_t = exp(Lambda Delta_t) x_{t-1} + (exp(Lambda Delta_t) - 1) / Lambda * B u_t     (ZOH, S5 eq. 6)
    y_t = 2 Re(C x_t) + D u_t

with P complex modes Lambda (P,), B (P x H), C (H x P) complex and D (H,). The conjugate-symmetric
half of a real system is kept (S5 section 3.2), hence ``2 Re``. Per-mode steps ``Delta_p =
exp(log_step_p)`` are learned (S5 section 4.3); a per-step ``dt`` (batch, L) multiplies them for
irregularly sampled inputs (S5 section 6.3: ``Delta_t = t_{k+1} - t_k``), and ``dt_scale`` scales
them at evaluation. The recurrence runs as :func:`longssm.kernels.linear_scan` (S5 evaluates it as
a parallel scan; on CPU the cache-resident sequential form of the same recurrence is faster).

Our choices where S5 offers several: Lambda initialised S4D-Lin (``-1/2 + i pi n``) or S4D-Inv
rather than the HiPPO-N eigenvectors (so B and C start in the diagonal basis, without the V^-1
transform); B ~ CN(0, 1/H), C ~ CN(0, 1/P) (their Lecun-normal scale). State: (batch, P) complex.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from longssm.kernels.diagonal import s4d_init_A, s4d_init_log_dt
from longssm.layers.cores import Core
from longssm.layers.optim import set_optim


def _complex_normal(*shape: int, std: float) -> torch.Tensor:
    """Real pairs (..., 2) of a complex normal with E|z|^2 = std^2."""
    return torch.view_as_real(torch.randn(*shape, dtype=torch.cfloat) * std)


class S5Core(Core):
    per_step_dt = True

    def __init__(self, H: int, d_state: int = 64, *, init: str = "lin", dt_min: float = 1e-3,
                 dt_max: float = 1e-1, ssm_lr: float = 1e-3):
        super().__init__()
        if d_state < 1:
            raise ValueError(f"d_state (P, complex modes) must be >= 1, got {d_state}")
        self.H, self.P, self.dt_scale = H, d_state, 1.0
        A = s4d_init_A(1, d_state, init)[0]  # (P,) complex128
        hint = dict(lr=ssm_lr, weight_decay=0.0)
        self.log_step = set_optim(nn.Parameter(s4d_init_log_dt(d_state, dt_min, dt_max).float()), **hint)
        self.A_log_re = set_optim(nn.Parameter(torch.log(-A.real).float()), **hint)
        self.A_im = set_optim(nn.Parameter(A.imag.float()), **hint)
        self.B = set_optim(nn.Parameter(_complex_normal(d_state, H, std=1 / math.sqrt(H))), **hint)
        self.C = nn.Parameter(_complex_normal(H, d_state, std=1 / math.sqrt(d_state)))
        self.D = nn.Parameter(torch.randn(H))

    def _system(self, dt):
        """(dA, dB_scale) per mode, (P,) or with per-step ``dt`` (batch, *t): (batch, *t, P)."""
        Lam = torch.complex(-torch.exp(self.A_log_re), self.A_im)
        step = torch.exp(self.log_step) * self.dt_scale  # (P,)
        if dt is not None:
            step = dt[..., None] * step
        dA = torch.exp(Lam * step)
        return dA, (dA - 1) / Lam

    def _forward(self, u, state, return_state, dt=None):
        B, C = torch.view_as_complex(self.B), torch.view_as_complex(self.C)
        dA, scale = self._system(dt)
        Bu = torch.einsum("bhl,ph->blp", u.to(B.dtype), B)  # (batch, L, P)
        x, last = self.op("linear_scan")(dA, scale * Bu, state, return_state)
        y = 2 * torch.einsum("blp,hp->bhl", x, C).real + self.D[:, None] * u
        return y, last

    def _step(self, u_t, state, dt=None):
        B, C = torch.view_as_complex(self.B), torch.view_as_complex(self.C)
        dA, scale = self._system(dt)
        x = scale * (u_t.to(B.dtype) @ B.T)  # (batch, P)
        if state is not None:
            x = x + dA * state
        return 2 * (x @ C.T).real + self.D * u_t, x

    def init_state(self, batch_size: int, *, device=None, dtype=None) -> torch.Tensor:
        kw = self._kw(device, dtype)
        cdtype = torch.complex128 if kw["dtype"] == torch.float64 else torch.complex64
        return torch.zeros(batch_size, self.P, device=kw["device"], dtype=cdtype)
