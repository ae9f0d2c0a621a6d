"""Causal multi-head attention as a sequence mixer; its state is the KV cache.

Scaled dot-product attention (Vaswani et al. 2017) through ``F.scaled_dot_product_attention``,
optional rotary position embeddings (RoFormer, Su et al. 2021, eq. 34, rotate-half pairing) and an
optional sliding window: token t attends to tokens s with ``t - window < s <= t``. The cache keeps
the rotated keys and the values of the last ``window - 1`` tokens (all tokens without a window),
and the absolute position of the next token for rotary phases. ``dropout`` drops attention
probabilities in training mode only (the reference synthetic configs use 0.1).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from longssm.kernels.checks import check_seq, check_token
from longssm.layers.options import AttentionOptions
from longssm.layers.state import check_state


class KVCache(NamedTuple):
    k: torch.Tensor  # (batch, n_heads, cached_len, head_dim), rotary already applied
    v: torch.Tensor  # (batch, n_heads, cached_len, head_dim)
    pos: int  # absolute position of the next token

    def last(self, n: int) -> "KVCache":
        """The cache of the last ``n`` tokens only (a bounded context; positions keep counting)."""
        keep = min(n, self.k.shape[2])
        return KVCache(self.k[:, :, self.k.shape[2] - keep:], self.v[:, :, self.v.shape[2] - keep:], self.pos)


def rotary(x: torch.Tensor, pos: torch.Tensor, base: float = 10000.0) -> torch.Tensor:
    """Rotate pairs (i, i + head_dim/2) of x (..., L, head_dim) by angle pos * base^(-2i/head_dim)."""
    half = x.shape[-1] // 2
    freqs = base ** (-torch.arange(half, device=x.device, dtype=torch.float64) / half)
    angle = pos.to(torch.float64)[:, None] * freqs  # (L, half): phases in float64
    cos, sin = angle.cos().to(x.dtype), angle.sin().to(x.dtype)
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


class Attention(nn.Module):
    """Options: :class:`longssm.layers.options.AttentionOptions`."""

    carries_state = False  # the KV cache grows with the context: never carried across training segments

    def __init__(self, d_model: int, **options):
        super().__init__()
        o = AttentionOptions(**options)
        n_heads, use_rotary, window, dropout = o.n_heads, o.use_rotary, o.window, o.dropout
        if n_heads < 1 or d_model % n_heads:
            raise ValueError(f"n_heads must be >= 1 and divide d_model={d_model}, got {n_heads}")
        if window is not None and window < 1:
            raise ValueError(f"window must be None or >= 1, got {window}")
        self.d_model, self.n_heads, self.head_dim = d_model, n_heads, d_model // n_heads
        if use_rotary and self.head_dim % 2:
            raise ValueError(f"rotary embeddings need an even head_dim, got {self.head_dim}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.use_rotary, self.window, self.rotary_base = use_rotary, window, o.rotary_base
        self.dropout = dropout  # on the attention probabilities, in training mode only
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=o.bias)
        self.out_proj = nn.Linear(d_model, d_model, bias=o.bias)

    def reset_parameters(self, *, std: float = 0.02, residual_std: float = 0.02) -> None:
        """GPT-2 init: N(0, std) projections, the output (a residual branch's) at residual_std."""
        for lin, s in ((self.qkv, std), (self.out_proj, residual_std)):
            nn.init.normal_(lin.weight, std=s)
            if lin.bias is not None:
                nn.init.zeros_(lin.bias)

    def forward(self, x: torch.Tensor, state: KVCache | None = None, *, return_state: bool = True):
        check_seq("x", x, self.d_model, self.qkv.weight.dtype)
        batch, L, _ = x.shape
        if state is not None:
            check_state("Attention", state, KVCache, batch)
        start = 0 if state is None else state.pos
        q, k, v = self.qkv(x).view(batch, L, 3, self.n_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        if self.use_rotary:
            pos = torch.arange(start, start + L, device=x.device)
            q, k = rotary(q, pos, self.rotary_base), rotary(k, pos, self.rotary_base)
        if state is not None:
            k, v = torch.cat([state.k, k], dim=2), torch.cat([state.v, v], dim=2)
        S = k.shape[2] - L  # cached tokens before x
        p = self.dropout if self.training else 0.0
        if S == 0 and (self.window is None or self.window >= L):
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=p)
        else:
            q_pos = torch.arange(S, S + L, device=x.device)[:, None]
            k_pos = torch.arange(S + L, device=x.device)[None, :]
            mask = k_pos <= q_pos
            if self.window is not None:
                mask &= k_pos > q_pos - self.window
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)
        out = self.out_proj(y.transpose(1, 2).reshape(batch, L, self.d_model))
        if not return_state:
            return out, None
        keep = k.shape[2] if self.window is None else min(k.shape[2], self.window - 1)
        return out, KVCache(k[:, :, k.shape[2] - keep:], v[:, :, v.shape[2] - keep:], start + L)

    def step(self, x_t: torch.Tensor, state: KVCache):
        """One token; the same computation as ``forward`` on a length-1 sequence."""
        check_token("x_t", x_t, self.d_model, self.qkv.weight.dtype)
        y, cache = self.forward(x_t[:, None], state)
        return y[:, 0], cache

    def init_state(self, batch_size: int, *, device=None, dtype=None) -> KVCache:
        w = self.qkv.weight
        empty = torch.zeros(batch_size, self.n_heads, 0, self.head_dim,
                            device=device or w.device, dtype=dtype or w.dtype)
        return KVCache(empty, empty, 0)
