"""Causal multi-head attention as a sequence mixer; its state is the KV cache.

Scaled dot-product attention (Vaswani et al. 2017) through ``F.scaled_dot_product_attention``,
optional rotary position embeddings (RoFormer, Su et al. 2021, eq. 34, rotate-half pairing) and an
optional sliding window: token t attends to tokens s with ``t - window < s <= t``. The cache keeps
the rotated keys and the values (of at least the last ``window - 1`` tokens with a window, of all
tokens without), and the absolute position of the next token for rotary phases. ``dropout`` drops
attention probabilities in training mode only (the reference synthetic configs use 0.1).

The cache is preallocated for decoding: its buffer has room beyond the cached tokens (twice the
needed size when it is (re)allocated), so a step writes one token in place instead of copying the
whole cache. States stay values: ``k`` and ``v`` are views of the valid tokens, and a cache
appends in place only at its buffer's frontier (the longest cache written into it); extending an
older cache of the same buffer (a second branch from one prompt) copies first.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from longssm.kernels.checks import check_seq, check_token
from longssm.layers.linear import Linear
from longssm.layers.options import AttentionOptions
from longssm.layers.state import check_state


class _Buffer:
    """Preallocated key and value buffers (batch, n_heads, capacity, head_dim) and how many tokens
    of them have been written; shared by every cache that views them, never copied by the state
    helpers (which copy only tensors and tuples)."""

    __slots__ = ("k", "v", "n")

    def __init__(self, k: torch.Tensor, v: torch.Tensor, n: int):
        self.k, self.v, self.n = k, v, n


class KVCache(NamedTuple):
    k: torch.Tensor  # (batch, n_heads, cached_len, head_dim), rotary already applied
    v: torch.Tensor  # (batch, n_heads, cached_len, head_dim)
    pos: int  # absolute position of the next token
    buffer: _Buffer | None = None  # the preallocated storage k and v view (None: none yet)

    def append(self, k: torch.Tensor, v: torch.Tensor) -> "KVCache":
        """This cache followed by ``k``, ``v`` (batch, n_heads, L, head_dim), positions advanced by
        L. Without autograd, written in place when this cache is its buffer's frontier and the
        buffer has room, else copied into a new buffer of twice the needed size; with autograd,
        concatenated (no in-place write under a graph)."""
        n, L = self.k.shape[2], k.shape[2]
        if torch.is_grad_enabled():
            return KVCache(torch.cat([self.k, k], 2), torch.cat([self.v, v], 2), self.pos + L)
        buf, start = self.buffer, self._start()
        if start is None or start + n + L > buf.k.shape[2]:
            shape = (*k.shape[:2], 2 * (n + L), k.shape[3])
            buf, start = _Buffer(k.new_empty(shape), v.new_empty(shape), n), 0
            buf.k[:, :, :n], buf.v[:, :, :n] = self.k, self.v
        end = start + n + L
        buf.k[:, :, start + n: end], buf.v[:, :, start + n: end] = k, v
        buf.n = end
        return KVCache(buf.k[:, :, start:end], buf.v[:, :, start:end], self.pos + L, buf)

    def _start(self) -> int | None:
        """Where this cache's tokens begin in its buffer, if they end at the buffer's frontier (so
        appending in place overwrites nothing another cache holds); None otherwise."""
        buf = self.buffer
        if buf is None or self.k.device != buf.k.device or self.k.stride() != buf.k.stride() \
                or self.k.untyped_storage().data_ptr() != buf.k.untyped_storage().data_ptr():
            return None
        start, rem = divmod(self.k.storage_offset() - buf.k.storage_offset(), buf.k.stride(2))
        ok = rem == 0 and start + self.k.shape[2] == buf.n and self.v.storage_offset() - buf.v.storage_offset() \
            == start * buf.v.stride(2)
        return start if ok else None

    def last(self, n: int) -> "KVCache":
        """The cache of the last ``n`` tokens only (a bounded context; positions keep counting): a
        view of the same buffer, so appending goes on in place until the buffer is full."""
        keep = min(n, self.k.shape[2])
        return KVCache(self.k[:, :, self.k.shape[2] - keep:], self.v[:, :, self.v.shape[2] - keep:], self.pos,
                       self.buffer)


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
        self.qkv = Linear(d_model, 3 * d_model, bias=o.bias)
        self.out_proj = Linear(d_model, d_model, bias=o.bias)

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
        cache = None
        if state is not None:
            cache = state.append(k, v)
            k, v = cache.k, cache.v
        S = k.shape[2] - L  # cached tokens before x
        p = self.dropout if self.training else 0.0
        if S == 0 and (self.window is None or self.window >= L):
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=p)
        elif L == 1 and (self.window is None or self.window > S):  # one new token sees every cached one
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=p)
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
        if cache is None:
            cache = KVCache(k, v, start + L)
        if self.window is not None:
            cache = cache.last(self.window - 1)  # a view: a ring of sorts, copied when the buffer is full
        return out, cache

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
