"""Causal long convolution by FFT (the convolution half of FlashConv, H3 paper section 4.1).

``y[b, h, t] = sum_{s=0}^{min(t, Lk-1)} k[h, s] * u[b, h, t - s] + D[h] * u[b, h, t]``

The FFT has size ``n >= L + Lk - 1`` so that no output in ``[0, L)`` wraps around (a linear, never
circular, convolution), rounded up to a 2-3-5-smooth length that pocketFFT/cuFFT transform fast.
Channels are processed in blocks whose spectra fit in cache: on a 2-core CPU, 768 channels of
L = 16K run ~3x faster in blocks of ~96 than all at once (see BENCHMARKS.md).
"""

from __future__ import annotations

import torch

from longssm.kernels.checks import check_float, check_shape

# Elements (real, per block) kept in flight per channel block: 96 channels x 32K-point spectra.
_BLOCK_ELEMENTS = 96 * 32768


def next_fast_len(n: int) -> int:
    """Smallest 2-3-5-smooth integer >= n (the lengths FFT libraries transform fastest)."""
    if n <= 1:
        return 1
    best = 1 << (n - 1).bit_length()
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            m = p35
            while m < n:
                m *= 2
            best = min(best, m)
            p35 *= 3
        p5 *= 5
    return best


def _check(u: torch.Tensor, k: torch.Tensor, D: torch.Tensor | None) -> None:
    check_float("u", u)
    check_float("k", k)
    if u.dim() != 3:
        raise ValueError(f"u must have shape (batch, channels, seq_len), got {tuple(u.shape)}")
    H, L = u.shape[1], u.shape[2]
    if L == 0:
        raise ValueError("u has seq_len 0; the convolution needs at least one token")
    if k.dim() != 2 or k.shape[0] != H or not 1 <= k.shape[1] <= L:
        raise ValueError(
            f"k must have shape (channels={H}, kernel_len) with 1 <= kernel_len <= seq_len={L}, "
            f"got {tuple(k.shape)}"
        )
    if D is not None:
        check_shape("D", D, (H,))


def fftconv(
    u: torch.Tensor,
    k: torch.Tensor,
    D: torch.Tensor | None = None,
    *,
    channel_block: int | None = None,
) -> torch.Tensor:
    """Causal convolution of ``u`` (batch, H, L) with per-channel kernels ``k`` (H, Lk), Lk <= L.

    Returns (batch, H, L) in u's dtype. ``channel_block`` overrides the cache-sized block of
    channels transformed together (default: about 3M spectrum elements per block).
    Differentiable in u, k and D.
    """
    _check(u, k, D)
    H, L = u.shape[1], u.shape[2]
    Lk = k.shape[1]
    n = next_fast_len(L + Lk - 1)
    if channel_block is None:
        channel_block = max(1, _BLOCK_ELEMENTS // (n * u.shape[0]))
    outs = []
    for start in range(0, H, channel_block):
        sl = slice(start, start + channel_block)
        u_f = torch.fft.rfft(u[:, sl], n=n)  # (B, h, n//2+1)
        k_f = torch.fft.rfft(k[sl], n=n)  # (h, n//2+1)
        outs.append(torch.fft.irfft(u_f * k_f, n=n)[..., :L])
    y = outs[0] if len(outs) == 1 else torch.cat(outs, dim=1)
    if D is not None:
        y = y + D[:, None] * u
    return y


def fftconv_ref(u: torch.Tensor, k: torch.Tensor, D: torch.Tensor | None = None) -> torch.Tensor:
    """The direct O(L^2) sum, the oracle for :func:`fftconv`: builds the causal Toeplitz matrix
    ``T[h, t, s] = k[h, t - s]`` (zero outside ``0 <= t - s < Lk``) and applies it."""
    _check(u, k, D)
    H, L = u.shape[1], u.shape[2]
    Lk = k.shape[1]
    lag = torch.arange(L, device=u.device)[:, None] - torch.arange(L, device=u.device)[None, :]
    valid = (lag >= 0) & (lag < Lk)  # (L, L)
    toeplitz = k[:, lag.clamp(0, Lk - 1)] * valid  # (H, L, L)
    y = torch.einsum("hts,bhs->bht", toeplitz, u)
    if D is not None:
        y = y + D[:, None] * u
    return y
