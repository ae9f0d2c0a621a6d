"""SSM cores: the seam where every state-space model plugs into the mixers.

A core maps a channel-first sequence to a sequence of the same shape and carries a state:

    forward(u, state=None, return_state=False) -> (y, state | None)   u, y: (batch, H, L)
    step(u_t, state) -> (y_t, state)                                   u_t, y_t: (batch, H)
    init_state(batch_size, *, device=None, dtype=None) -> state       the zero state

``state=None`` is the zero state. A state is a tensor or a small typed value (NamedTuple) that is
returned, never mutated; mixers nest a core's state in their own state as an opaque field, so a
wrapper core (State Memory Replay) changes no mixer state type.

Every core has two plain attributes, set from the model config or by :func:`configure`:

* ``backend``: which implementation of its kernels runs (``longssm.kernels.backend``);
* ``dt_scale`` (time-continuous cores only): multiplies the time step at evaluation, the knob of
  the sampling-step experiments (input sampled c times faster: ``dt_scale = 1 / c``).

Precision: a core runs in float32 (float64 inputs stay float64) with autocast disabled, whatever
the autocast dtype around it: PyTorch has no bf16 FFT, and kernel generation (powers of dA),
scans and carried states lose too much in 8 mantissa bits. States are float32 / complex64.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from longssm.kernels.backend import check_backend, get_op
from longssm.layers.linear import Linear
from longssm.kernels.diagonal import DISCRETIZATIONS, discretize, s4d_init_A, s4d_init_log_dt, ssm_step
from longssm.kernels.shift import shift_kernel, shift_step
from longssm.layers.optim import set_optim


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """float32 for half types, float64 kept: the dtype cores compute and keep states in."""
    return torch.promote_types(dtype, torch.float32)


class Core(nn.Module):
    """Shared frame of the cores: precision and the backend; subclasses write ``_forward`` and
    ``_step`` on inputs already in :func:`compute_dtype`."""

    #: Takes a per-step time step ``dt`` (batch, L) (non-uniform sampling); time-invariant cores
    #: take only the scalar ``dt_scale``.
    per_step_dt = False

    def __init__(self):
        super().__init__()
        self.backend = "auto"

    def forward(self, u: torch.Tensor, state=None, return_state: bool = False, dt: torch.Tensor | None = None):
        """u (batch, H, L); ``dt`` (batch, L): per-step time steps relative to the learned one."""
        with torch.autocast(u.device.type, enabled=False):
            return self._forward(u.to(compute_dtype(u.dtype)), state, return_state, **self._dt(dt, u.dtype))

    def step(self, u_t: torch.Tensor, state, dt: torch.Tensor | None = None):
        """u_t (batch, H); ``dt`` (batch,)."""
        with torch.autocast(u_t.device.type, enabled=False):
            return self._step(u_t.to(compute_dtype(u_t.dtype)), state, **self._dt(dt, u_t.dtype))

    def _dt(self, dt, dtype) -> dict:
        if dt is None:
            return {}
        if not self.per_step_dt:
            raise ValueError(f"{type(self).__name__} is time-invariant: it takes no per-step dt; set its "
                             f"dt_scale to the mean step instead")
        return {"dt": dt.to(compute_dtype(dtype))}

    def op(self, name: str):
        return get_op(name, self.backend)

    def frozen(self, name: str, fn):
        """``fn()`` (a function of this core's parameters only), remembered while no gradient is
        recorded and no parameter changes: decoding and evaluation recompute a discretisation or
        a kernel once, not at every step. The key holds each parameter's identity, version, storage
        and dtype (in-place updates bump the version; ``.to()`` swaps the storage) and ``dt_scale``."""
        params = list(self.parameters())
        if torch.is_grad_enabled() and any(p.requires_grad for p in params):
            return fn()
        key = (getattr(self, "dt_scale", None), *((id(p), p._version, p.data_ptr(), p.dtype) for p in params))
        memo = self.__dict__.setdefault("_frozen", {})
        if name not in memo or memo[name][0] != key:
            memo[name] = (key, fn())
        return memo[name][1]

    def _kw(self, device, dtype) -> dict:
        ref = next(self.parameters())
        return {"device": device or ref.device, "dtype": compute_dtype(dtype or ref.dtype)}


class DiagonalCore(Core):
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
        self.discretization, self.chunk_size, self.dt_scale = discretization, chunk_size, 1.0
        A = s4d_init_A(H, self.N, init)
        hint = dict(lr=ssm_lr, weight_decay=0.0)
        self.log_dt = set_optim(nn.Parameter(s4d_init_log_dt(H, dt_min, dt_max).float()), **hint)
        self.A_log_re = set_optim(nn.Parameter(torch.log(-A.real).float()), **hint)
        self.A_im = set_optim(nn.Parameter(A.imag.float()), **hint)
        self.B = set_optim(nn.Parameter(torch.view_as_real(torch.ones(H, self.N, dtype=torch.cfloat))), **hint)
        self.C = nn.Parameter(torch.view_as_real(torch.randn(H, self.N, dtype=torch.cfloat)))
        self.D = nn.Parameter(torch.randn(H))

    def discrete(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(dA, dB, 2C): the discrete system at step ``exp(log_dt) * dt_scale``, C doubled for
        the conjugate modes."""
        A = torch.complex(-torch.exp(self.A_log_re), self.A_im)
        dt = torch.exp(self.log_dt)
        if self.dt_scale != 1.0:
            dt = dt * self.dt_scale
        dA, dB = discretize(A, torch.view_as_complex(self.B), dt, self.discretization)
        return dA, dB, 2 * torch.view_as_complex(self.C)

    def _forward(self, u, state, return_state):
        dA, dB, C = self.frozen("discrete", self.discrete)
        return self.op("ssm_conv")(u, dA, dB, C, self.D, state, return_state, self.chunk_size)

    def _step(self, u_t, state):
        dA, dB, C = self.frozen("discrete", self.discrete)
        return ssm_step(u_t, state, dA, dB, C, self.D)

    def init_state(self, batch_size: int, *, device=None, dtype=None) -> torch.Tensor:
        kw = self._kw(device, dtype)
        cdtype = torch.complex128 if kw["dtype"] == torch.float64 else torch.complex64
        return torch.zeros(batch_size, self.H, self.N, device=kw["device"], dtype=cdtype)


class ShiftCore(Core):
    """H3's shift SSM per channel (H3 section 3.1): B initialised to e1 (so the state is the last
    ``d_state`` inputs), C initialised like a depthwise Conv1d weight, plus the ``D`` skip.
    B takes ``ssm_lr`` and no weight decay. State: the window of the last d_state inputs. A
    discrete shift has no time step, so this core has no ``dt_scale``."""

    def __init__(self, H: int, d_state: int = 64, *, ssm_lr: float = 1e-3):
        super().__init__()
        self.H, self.N = H, d_state
        B = torch.zeros(H, d_state)
        B[:, 0] = 1.0
        self.B = set_optim(nn.Parameter(B), lr=ssm_lr, weight_decay=0.0)
        bound = 1 / math.sqrt(d_state)
        self.C = nn.Parameter(torch.empty(H, d_state).uniform_(-bound, bound))
        self.D = nn.Parameter(torch.randn(H))

    def _kernel(self) -> torch.Tensor:
        return self.frozen("kernel", lambda: shift_kernel(self.B, self.C))

    def _forward(self, u, state, return_state):
        return self.op("shift_conv")(u, self._kernel(), self.D, state, return_state)

    def _step(self, u_t, state):
        return shift_step(u_t, state, self._kernel(), self.D)

    def init_state(self, batch_size: int, *, device=None, dtype=None) -> torch.Tensor:
        return torch.zeros(batch_size, self.H, self.N, **self._kw(device, dtype))


class SelectiveCore(Core):
    """The selective SSM of Mamba (Gu & Dao 2023, Algorithm 2) on x (batch, d_inner, L):
    ``dt, B, C = x_proj(x)``, ``dt = softplus(dt_proj(dt))``, then the selective scan with the
    ``D`` skip. Initialisation as in mamba_ssm: A = -(1..N) per channel (S4D-Real), D = 1, dt_proj
    bias the inverse softplus of dt ~ logU[dt_min, dt_max] (Mamba section 3.6); A_log and D take
    no weight decay. State: (batch, d_inner, d_state)."""

    def __init__(self, d_inner: int, d_state: int = 16, *, dt_rank: int, dt_min: float = 1e-3,
                 dt_max: float = 1e-1, dt_init_floor: float = 1e-4, segment_size: int | None = None):
        super().__init__()
        self.d_inner, self.d_state, self.dt_rank = d_inner, d_state, dt_rank
        self.segment_size, self.dt_scale = segment_size, 1.0
        self.x_proj = Linear(d_inner, dt_rank + 2 * d_state, bias=False)
        self.dt_proj = Linear(dt_rank, d_inner)
        nn.init.uniform_(self.dt_proj.weight, -dt_rank**-0.5, dt_rank**-0.5)
        log_dt = torch.rand(d_inner) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)
        dt = torch.exp(log_dt).clamp(min=dt_init_floor)
        with torch.no_grad():
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # inverse softplus
        A = torch.arange(1, d_state + 1, dtype=torch.float32).repeat(d_inner, 1)
        self.A_log = set_optim(nn.Parameter(torch.log(A)), weight_decay=0.0)
        self.D = set_optim(nn.Parameter(torch.ones(d_inner)), weight_decay=0.0)

    def reset_parameters(self, *, std: float = 0.02, residual_std: float = 0.02) -> None:
        """The GPT-2 init of the model reaches x_proj only; dt_proj keeps Mamba's init."""
        nn.init.normal_(self.x_proj.weight, std=std)

    per_step_dt = True

    def _params(self, x, step=None):
        """x (batch, *t, d_inner), per-step ``step`` (batch, *t) or None -> delta (batch, *t,
        d_inner) and whether softplus is still to apply, B, C (batch, *t, d_state)."""
        dt, B, C = self.x_proj(x).split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        dt = self.op("linear")(dt, self.dt_proj.weight)  # its bias goes into the kernel
        if self.dt_scale == 1.0 and step is None:  # the kernel adds the bias and applies softplus
            return dt, True, B, C
        delta = F.softplus(dt + self.dt_proj.bias) * self.dt_scale
        return (delta if step is None else delta * step[..., None]), False, B, C

    def _forward(self, u, state, return_state, dt=None):
        dt, softplus, B, C = self._params(u.transpose(1, 2), dt)
        return self.op("selective_scan")(
            u, dt.transpose(1, 2), -torch.exp(self.A_log), B.transpose(1, 2), C.transpose(1, 2), self.D,
            delta_bias=self.dt_proj.bias if softplus else None, delta_softplus=softplus,
            initial_state=state, return_state=return_state, segment_size=self.segment_size)

    def _step(self, u_t, state, dt=None):
        dt, softplus, B, C = self._params(u_t, dt)
        bias = self.dt_proj.bias if softplus else None
        return self.op("selective_scan_step")(u_t, dt, -torch.exp(self.A_log), B, C, state, self.D,
                                              delta_bias=bias, delta_softplus=softplus)

    def init_state(self, batch_size: int, *, device=None, dtype=None) -> torch.Tensor:
        return torch.zeros(batch_size, self.d_inner, self.d_state, **self._kw(device, dtype))


def configure(module: nn.Module, *, backend: str | None = None, dt_scale: float | None = None) -> None:
    """Set the kernel backend of every core and linear layer inside ``module`` and/or the
    time-step scale of every core."""
    if backend is not None:
        check_backend(backend)
    if dt_scale is not None and not dt_scale > 0:
        raise ValueError(f"dt_scale must be > 0, got {dt_scale}")
    for m in module.modules():
        if isinstance(m, Linear) and backend is not None:
            m.backend = backend
        if isinstance(m, Core):
            if backend is not None:
                m.backend = backend
            if dt_scale is not None and hasattr(m, "dt_scale"):
                m.dt_scale = float(dt_scale)
