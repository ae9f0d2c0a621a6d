"""Causal long convolution by FFT (the convolution half of FlashConv, H3 paper section 4.1).

``y[b, h, t] = sum_{s=0}^{min(t, Lk-1)} k[h, s] * u[b, h, t - s] + D[h] * u[b, h, t]``

The FFT has size ``n >= L + Lk - 1`` so that no output in ``[0, L)`` wraps around (a linear, never
circular, convolution), rounded up to a 2-3-5-smooth length that pocketFFT/cuFFT transform fast.
Channels are processed in blocks whose spectra stay in cache: on our 2-core CPU, 768 channels
of L = 16K run 2-2.5x faster in blocks of 16-64 than all at once (see BENCHMARKS.md).
"""

from __future__ import annotations

import torch

from longssm.kernels.checks import check_float, check_shape

# Real FFT points per channel block (batch x channels x n): 32 channels of 32K-point transforms.
_BLOCK_ELEMENTS = 32 * 32768


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


class _FFTConv(torch.autograd.Function):
    """Blocked causal FFT convolution with a hand-written backward.

    Backward of a causal convolution is a correlation: grad_u = irfft(G conj(K))[:L] and
    grad_k = irfft(sum_batch G conj(U))[:Lk], with G = rfft(grad_y, n); with n >= L + Lk - 1 neither
    wraps around. The spectra U, K of the forward are kept for it (what autograd would keep too),
    which saves the zero-padding and slicing copies autograd would make per block.
    """

    @staticmethod
    def forward(ctx, u, k, block):
        L, Lk = u.shape[-1], k.shape[-1]
        n = next_fast_len(L + Lk - 1)
        keep = any(ctx.needs_input_grad[:2])
        y = u.new_empty(u.shape)
        spectra = []
        for start in range(0, u.shape[1], block):
            sl = slice(start, start + block)
            u_f = torch.fft.rfft(u[:, sl], n=n)  # (batch, block, n//2+1)
            k_f = torch.fft.rfft(k[sl], n=n)  # (block, n//2+1)
            y[:, sl] = torch.fft.irfft(u_f * k_f, n=n)[..., :L]
            if keep:
                spectra.append((u_f, k_f))
        ctx.spectra, ctx.sizes = spectra, (L, Lk, n, block)
        return y

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g):
        L, Lk, n, block = ctx.sizes
        need_u, need_k = ctx.needs_input_grad[:2]
        grad_u = g.new_empty(g.shape) if need_u else None
        grad_k = g.new_empty(g.shape[1], Lk) if need_k else None
        for i, (u_f, k_f) in enumerate(ctx.spectra):
            sl = slice(i * block, (i + 1) * block)
            g_f = torch.fft.rfft(g[:, sl], n=n)
            if need_u:
                grad_u[:, sl] = torch.fft.irfft(g_f * k_f.conj(), n=n)[..., :L]
            if need_k:
                grad_k[sl] = torch.fft.irfft((g_f * u_f.conj()).sum(0), n=n)[..., :Lk]
        ctx.spectra = None
        return grad_u, grad_k, None


def fftconv(
    u: torch.Tensor,
    k: torch.Tensor,
    D: torch.Tensor | None = None,
    *,
    channel_block: int | None = None,
) -> torch.Tensor:
    """Causal convolution of ``u`` (batch, H, L) with per-channel kernels ``k`` (H, Lk), Lk <= L.

    Returns (batch, H, L) in u's dtype. ``channel_block`` overrides the cache-sized block of
    channels transformed together (default: about 1M FFT points per block).
    Differentiable in u, k and D (once: the backward is hand-written).
    """
    _check(u, k, D)
    n = next_fast_len(u.shape[-1] + k.shape[-1] - 1)
    if channel_block is None:
        channel_block = max(1, _BLOCK_ELEMENTS // (n * u.shape[0]))
    y = _FFTConv.apply(u, k, channel_block)
    if D is not None:
        y = y + D[:, None] * u
    return y


def fftconv_ref(u: torch.Tensor, k: torch.Tensor, D: torch.Tensor | None = None) -> torch.Tensor:
    """The direct O(L^2) sum, the oracle for :func:`fftconv`: builds the causal Toeplitz matrix
    ``T[h, t, s] = k[h, t - s]`` (zero outside ``0 <= t - s < Lk``) and applies it."""
    _check(u, k, D)
    L = u.shape[2]
    Lk = k.shape[1]
    lag = torch.arange(L, device=u.device)[:, None] - torch.arange(L, device=u.device)[None, :]
    valid = (lag >= 0) & (lag < Lk)  # (L, L)
    toeplitz = k[:, lag.clamp(0, Lk - 1)] * valid  # (H, L, L)
    y = torch.einsum("hts,bhs->bht", toeplitz, u)
    if D is not None:
        y = y + D[:, None] * u
    return y
