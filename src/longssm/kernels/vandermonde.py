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
small power tables (H, L1, N) and (H, L2, N) with L1 * L2 >= L, and one batched real matmul.
Powers are ``exp(l * log z)``, exact for integer l whatever branch of log is taken, computed as
``|.| e^(i angle)`` from real exponentials and sines (:func:`cexp`: about 4x faster than PyTorch's
complex ``exp`` on CPU, same rounding). The matmuls put the channel dimension first and fold any
batch into the rows, so the shared power tables are never copied per batch row.
"""

from __future__ import annotations

import math

import torch


def cexp(w: torch.Tensor) -> torch.Tensor:
    """``exp(w)`` for complex w through real exp, cos and sin (vectorised on CPU, unlike complex exp)."""
    return torch.polar(torch.exp(w.real), w.imag)


def _per_channel_matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a (..., H, P, K) @ b (H, K, Q) -> (..., H, P, Q), as one (H, rows, K) batched matmul."""
    if a.dim() == 3:
        return torch.bmm(a, b)
    lead = a.shape[:-3]
    H, P, K = a.shape[-3:]
    rows = a.reshape(-1, H, P, K).transpose(0, 1).reshape(H, -1, K)
    out = torch.bmm(rows, b)  # (H, batch * P, Q)
    return out.view(H, -1, P, b.shape[-1]).transpose(0, 1).reshape(*lead, H, P, b.shape[-1])


class BlockedPowers:
    """Power tables of z (H, N) for products of length L, built once and reused across chunks."""

    def __init__(self, z: torch.Tensor, L: int):
        self.L = L
        self.L2 = math.isqrt(L - 1) + 1  # ceil(sqrt(L))
        self.L1 = math.ceil(L / self.L2)
        self.log_z = torch.log(z)
        self._tables: dict[tuple[str, int], torch.Tensor] = {}

    def _powers(self, exponents: torch.Tensor) -> torch.Tensor:
        """(P,) exponents -> (H, P, N): z^e."""
        return cexp(exponents.to(self.log_z.dtype)[None, :, None] * self.log_z[:, None, :])

    def _table(self, kind: str, offset: int = 0) -> torch.Tensor:
        """Two exponentials tables, z^(i*L2) and z^j; the others are flips and products of them."""
        key = (kind, offset)
        if key not in self._tables:
            dev = self.log_z.device
            if kind == "outer":  # z^(i*L2): (H, L1, N)
                t = self._powers(torch.arange(self.L1, device=dev) * self.L2)
            elif kind == "powers":  # z^j: (H, L2, N)
                t = self._powers(torch.arange(self.L2, device=dev))
            elif kind == "outer_t":  # z^((L1-1-i)*L2): (H, L1, N)
                t = self._table("outer").flip(-2)
            elif kind == "inner":  # z^(j+offset) as interleaved rows Re, -Im: (H, 2N, L2)
                p = self._table("powers") * cexp(offset * self.log_z)[:, None, :]
                t = torch.stack([p.real, -p.imag], dim=-1).flatten(-2).transpose(-1, -2).contiguous()
            else:  # "inner_t": z^(L2-1-m) as interleaved columns Re, Im: (H, L2, 2N)
                t = torch.view_as_real(self._table("powers").flip(-2).contiguous()).flatten(-2)
            self._tables[key] = t
        return self._tables[key]

    def forward(self, coef: torch.Tensor, L: int | None = None, offset: int = 0) -> torch.Tensor:
        """Re(sum_n coef z^(l + offset)) for l < L (<= self.L): (..., H, L) real."""
        L = self.L if L is None else L
        a = coef.unsqueeze(-2) * self._table("outer")  # (..., H, L1, N)
        # Re(a @ p) = a as interleaved (Re, Im) pairs @ p as interleaved rows (Re, -Im): one real
        # matmul on a view of a, no copy.
        a_pairs = torch.view_as_real(a).flatten(-2)  # (..., H, L1, 2N)
        out = _per_channel_matmul(a_pairs, self._table("inner", offset))  # (..., H, L1, L2)
        return out.flatten(-2)[..., :L]

    def transpose(self, u: torch.Tensor) -> torch.Tensor:
        """sum_j u_j z^(L-1-j) for u (..., H, L) real (L = self.L): (..., H, N) complex.

        u is left-padded to L1 * L2 so that ``L - 1 - j`` splits as ``(L1-1-i) * L2 + (L2-1-m)``.
        """
        if u.shape[-1] != self.L:
            raise ValueError(f"expected length {self.L}, got {u.shape[-1]}")
        L1, L2 = self.L1, self.L2
        u_blocks = torch.nn.functional.pad(u, (L1 * L2 - self.L, 0)).unflatten(-1, (L1, L2))
        part = _per_channel_matmul(u_blocks, self._table("inner_t"))  # (..., H, L1, 2N): (Re, Im) pairs
        part = torch.view_as_complex(part.unflatten(-1, (-1, 2)))  # (..., H, L1, N), a view
        return (part * self._table("outer_t")).sum(-2)


def vandermonde(coef: torch.Tensor, z: torch.Tensor, L: int, offset: int = 0) -> torch.Tensor:
    """``Re(sum_n coef[..., h, n] * z[h, n]^(l + offset))`` for l in [0, L): (..., H, L), real.

    coef: (..., H, N) complex; z: (H, N) complex, |z| <= 1 for a stable SSM.
    """
    return BlockedPowers(z, L).forward(coef, offset=offset)


def vandermonde_transpose(u: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """``sum_j u[..., h, j] * z[h, n]^(L - 1 - j)``: (..., H, N) complex; u (..., H, L) real."""
    return BlockedPowers(z, u.shape[-1]).transpose(u)


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
