"""Vandermonde products of diagonal SSMs by blocked powers.

A diagonal SSM with N modes ``z`` (the discrete A) needs two products with the Vandermonde matrix
``V[n, l] = z_n^l``:

* forward, ``out[..., h, l] = Re(sum_n coef[..., h, n] * z[h, n]^(l + offset))`` for l < L: the SSM
  convolution kernel (coef = C * dB, S4D paper eq. 4) and the response to an initial state
  (coef = C * x0, offset 1; H3 paper section 4.2);
* transpose, ``out[..., h, n] = sum_j u[..., h, j] * z[h, n]^(L - 1 - j)``: the state an input
  leaves behind (state passing).

Materialising ``z^l`` for all l (the naive ``exp(dtA * arange(L))`` of s4d.py) costs H*N*L complex
exponentials and as much memory. Writing ``l = i * L2 + j`` gives ``z^l = z^(i*L2) * z^j``: two
small power tables (H, L1, N) and (H, N, L2) with L1 * L2 >= L and one batched matmul per table
pair, so only H*N*(L1 + L2) exponentials are taken. Powers are ``exp(l * log z)``, exact for
integer l whatever branch of log is taken.
"""

from __future__ import annotations

import math

import torch


def _split(L: int) -> tuple[int, int]:
    L2 = math.isqrt(L - 1) + 1  # ceil(sqrt(L))
    return math.ceil(L / L2), L2


def _powers(log_z: torch.Tensor, exponents: torch.Tensor) -> torch.Tensor:
    """(H, N) x (P,) -> (H, P, N): z^e for each exponent."""
    return torch.exp(exponents.to(log_z.dtype)[None, :, None] * log_z[:, None, :])


def vandermonde(coef: torch.Tensor, z: torch.Tensor, L: int, offset: int = 0) -> torch.Tensor:
    """``Re(sum_n coef[..., h, n] * z[h, n]^(l + offset))`` for l in [0, L): (..., H, L), real.

    coef: (..., H, N) complex; z: (H, N) complex, |z| <= 1 for a stable SSM.
    """
    L1, L2 = _split(L)
    log_z = torch.log(z)
    ar = torch.arange(max(L1, L2), device=z.device)
    outer = _powers(log_z, ar[:L1] * L2)  # (H, L1, N): z^(i*L2)
    inner = _powers(log_z, ar[:L2] + offset).transpose(-1, -2)  # (H, N, L2): z^(j + offset)
    a = coef.unsqueeze(-2) * outer  # (..., H, L1, N)
    # Re(a @ inner) with two real matmuls instead of one complex one (which would compute Im too).
    out = a.real @ inner.real - a.imag @ inner.imag  # (..., H, L1, L2)
    return out.flatten(-2)[..., :L]


def vandermonde_transpose(u: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """``sum_j u[..., h, j] * z[h, n]^(L - 1 - j)``: (..., H, N) complex.

    u: (..., H, L) real; z: (H, N) complex. The input is left-padded with zeros to L1 * L2 so that
    ``L - 1 - j`` splits as ``(L1 - 1 - i) * L2 + (L2 - 1 - m)`` over the padded index i*L2 + m.
    """
    L = u.shape[-1]
    L1, L2 = _split(L)
    log_z = torch.log(z)
    ar = torch.arange(max(L1, L2), device=z.device)
    outer = _powers(log_z, (L1 - 1 - ar[:L1]) * L2)  # (H, L1, N)
    inner = _powers(log_z, L2 - 1 - ar[:L2])  # (H, L2, N)
    u_blocks = torch.nn.functional.pad(u, (L1 * L2 - L, 0)).unflatten(-1, (L1, L2))
    partial = torch.complex(u_blocks @ inner.real, u_blocks @ inner.imag)  # (..., H, L1, N)
    return (partial * outer).sum(-2)


def vandermonde_ref(coef: torch.Tensor, z: torch.Tensor, L: int, offset: int = 0) -> torch.Tensor:
    """Twin of :func:`vandermonde`: the full (H, N, L) power table, as in s4d.py."""
    powers = torch.exp(torch.log(z)[..., None] * torch.arange(offset, offset + L, device=z.device))
    return torch.einsum("...hn,hnl->...hl", coef, powers).real


def vandermonde_transpose_ref(u: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Twin of :func:`vandermonde_transpose` with the full (H, N, L) power table."""
    L = u.shape[-1]
    exps = torch.arange(L - 1, -1, -1, device=z.device)
    powers = torch.exp(torch.log(z)[..., None] * exps)  # (H, N, L)
    return torch.einsum("...hl,hnl->...hn", u.to(powers.dtype), powers)
