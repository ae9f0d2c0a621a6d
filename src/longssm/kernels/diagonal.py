"""Diagonal (S4D) state-space models: initialisation, discretisation, kernel, and the convolution
with state passing (FlashConv, H3 paper section 4.2, Proposition 2).

Notation (S4D paper, Gu et al. 2022, section 2): per channel h, N complex modes, continuous
``x' = A x + B u``, ``y = Re(C x)``; discrete ``x_t = dA x_{t-1} + dB u_t``, ``y_t = Re(C x_t)``.
A real SSM of state size 2N is represented by N modes of each conjugate pair, so layers pass
``C`` already doubled. Shapes: u (batch, H, L); dA, dB, C (H, N) complex; state (batch, H, N).
"""

from __future__ import annotations

import math

import torch

from longssm.kernels.checks import check_float, check_shape
from longssm.kernels.fftconv import fftconv
from longssm.kernels.vandermonde import BlockedPowers, cexp, vandermonde

DISCRETIZATIONS = ("zoh", "bilinear")
INITS = ("lin", "inv")


def s4d_init_A(H: int, N: int, init: str = "lin") -> torch.Tensor:
    """Continuous diagonal A (H, N) complex128 (S4D paper section 4.1, eq. 8-9).

    ``lin``: A_n = -1/2 + i*pi*n (S4D-Lin, what H3 uses); ``inv``: A_n = -1/2 + i*(N'/pi)*(N'/(2n+1) - 1)
    with N' = 2N the real state size (S4D-Inv).
    """
    n = torch.arange(N, dtype=torch.float64)
    if init == "lin":
        imag = math.pi * n
    elif init == "inv":
        imag = (2 * N / math.pi) * (2 * N / (2 * n + 1) - 1)
    else:
        raise ValueError(f"init must be one of {INITS}, got {init!r}")
    return torch.complex(torch.full((H, N), -0.5, dtype=torch.float64), imag.expand(H, N))


def s4d_init_log_dt(H: int, dt_min: float = 1e-3, dt_max: float = 1e-1, generator=None) -> torch.Tensor:
    """log(dt) ~ U[log dt_min, log dt_max], (H,) float64 (S4 / S4D convention)."""
    r = torch.rand(H, dtype=torch.float64, generator=generator)
    return r * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)


def discretize(
    A: torch.Tensor, B: torch.Tensor, dt: torch.Tensor, method: str = "bilinear"
) -> tuple[torch.Tensor, torch.Tensor]:
    """(dA, dB) from continuous A, B (H, N) and step dt (H,).

    zoh: dA = exp(dt A), dB = (dA - 1) / A * B.
    bilinear (Tustin, used by H3): dA = (1 + dt A / 2) / (1 - dt A / 2), dB = dt B / (1 - dt A / 2).
    """
    dtA = dt[:, None] * A
    if method == "zoh":
        dA = torch.exp(dtA)
        return dA, (dA - 1) / A * B
    if method == "bilinear":
        denom = 1 - dtA / 2
        return (1 + dtA / 2) / denom, dt[:, None] * B / denom
    raise ValueError(f"discretization must be one of {DISCRETIZATIONS}, got {method!r}")


def ssm_kernel(dA: torch.Tensor, dB: torch.Tensor, C: torch.Tensor, L: int) -> torch.Tensor:
    """Convolution kernel K[h, l] = Re(sum_n C dB dA^l), (H, L) real, by blocked powers."""
    return vandermonde(C * dB, dA, L)


def _check_ssm(u, dA, dB, C, D, state):
    check_float("u", u)
    if u.dim() != 3 or u.shape[-1] == 0:
        raise ValueError(f"u must have shape (batch, H, seq_len >= 1), got {tuple(u.shape)}")
    H = u.shape[1]
    for name, p in (("dA", dA), ("dB", dB), ("C", C)):
        check_float(name, p, allow_complex=True)
        check_shape(name, p, (H, None))
    N = dA.shape[1]
    if D is not None:
        check_shape("D", D, (H,))
    if state is not None:
        check_shape("state", state, (u.shape[0], H, N))


def ssm_conv(
    u: torch.Tensor,
    dA: torch.Tensor,
    dB: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    initial_state: torch.Tensor | None = None,
    return_state: bool = False,
    chunk_size: int = 4096,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Run the discrete diagonal SSM over u by FFT convolution with state passing.

    The sequence is cut into chunks of ``chunk_size``. Inside a chunk the output is the FFT
    convolution with the (chunk-length) kernel plus the response to the state entering the chunk,
    ``Re(C dA^(t+1) x)``; the state leaving it is ``dA^T x + sum_j dA^(T-1-j) dB u_j``. Both are
    exact (H3 Proposition 2), so memory is bounded by the chunk whatever L is, and a state can be
    passed in and out. Returns y (batch, H, L) real and the final state (batch, H, N) complex, or
    None with ``return_state=False`` (the last chunk's state is then never computed).
    """
    _check_ssm(u, dA, dB, C, D, initial_state)
    L = u.shape[-1]
    T = min(L, chunk_size)
    powers = {T: BlockedPowers(dA, T)}  # power tables shared by all chunks of one length
    K = powers[T].forward(C * dB)  # (H, T): the kernel, Re(C dB dA^l)
    x = initial_state
    # Without autograd, write chunks into one buffer so peak memory stays ~ input + output.
    y = None if torch.is_grad_enabled() else u.new_empty(u.shape)
    outs, start = [], 0
    chunks = u.split(T, dim=-1)
    for i, u_c in enumerate(chunks):
        Tc = u_c.shape[-1]
        if Tc not in powers:  # only the last chunk can be shorter
            powers[Tc] = BlockedPowers(dA, Tc)
        pw = powers[Tc]
        y_c = fftconv(u_c, K[:, :Tc], D)
        if x is not None:
            y_c = y_c + pw.forward(C * x, offset=1)  # response to the entering state
        if return_state or i + 1 < len(chunks):
            x_in = pw.transpose(u_c) * dB  # (batch, H, N): state left by this chunk's input
            x = x_in if x is None else cexp(Tc * pw.log_z) * x + x_in
        if y is None:
            outs.append(y_c)
        else:
            y[..., start : start + Tc] = y_c
        start += Tc
    if y is None:
        y = outs[0] if len(outs) == 1 else torch.cat(outs, dim=-1)
    return y, (x if return_state else None)


def ssm_conv_ref(
    u: torch.Tensor,
    dA: torch.Tensor,
    dB: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    initial_state: torch.Tensor | None = None,
    return_state: bool = False,
    chunk_size: int = 4096,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Twin of :func:`ssm_conv`: the recurrence ``x_t = dA x_{t-1} + dB u_t``, one token at a time
    (``chunk_size`` is accepted for an identical signature and unused)."""
    _check_ssm(u, dA, dB, C, D, initial_state)
    x = initial_state
    ys = []
    for u_t in u.unbind(-1):
        y_t, x = ssm_step(u_t, x, dA, dB, C, D)
        ys.append(y_t)
    return torch.stack(ys, dim=-1), (x if return_state else None)


def ssm_step(u_t, state, dA, dB, C, D=None):
    """One token: u_t (batch, H), state (batch, H, N) complex or None (zero) -> (y_t, new_state)."""
    x = dB * u_t[..., None] if state is None else dA * state + dB * u_t[..., None]
    y = (C * x).real.sum(-1)
    if D is not None:
        y = y + D * u_t
    return y, x
