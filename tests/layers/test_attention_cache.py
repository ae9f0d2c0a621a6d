"""The preallocated KV cache: decoding writes in place at the buffer's frontier, yet caches stay
values (two branches from one prompt never see each other's tokens), and windows stay bounded."""

import torch

from longssm.layers import Attention
from conftest import assert_close


def _attention(window=None):
    torch.manual_seed(0)
    return Attention(16, n_heads=2, window=window).double().eval()


@torch.no_grad()
def test_decoding_appends_in_place_after_one_growth():
    att = _attention()
    x = torch.randn(2, 5, 16, dtype=torch.float64)
    _, cache = att(x)
    ptrs = []
    for _ in range(6):
        _, cache = att.step(torch.randn(2, 16, dtype=torch.float64), cache)
        ptrs.append(cache.k.untyped_storage().data_ptr())
    assert len(set(ptrs)) == 1 and cache.k.shape[2] == 11 and cache.pos == 11  # one buffer of 2 * 6 tokens


@torch.no_grad()
def test_two_branches_from_one_cache_are_independent():
    att = _attention()
    prompt, extra = torch.randn(1, 4, 16, dtype=torch.float64), torch.randn(1, 1, 16, dtype=torch.float64)
    a, b = torch.randn(1, 1, 16, dtype=torch.float64), torch.randn(1, 1, 16, dtype=torch.float64)
    _, cache = att(prompt)
    _, cache = att.step(extra[:, 0], cache)  # now in a grown buffer with room
    y_a, cache_a = att.step(a[:, 0], cache)  # written in place at the frontier
    y_b, _ = att.step(b[:, 0], cache)  # the same slot: a copy, branch a untouched
    y_ab, _ = att.step(b[:, 0], cache_a)
    whole = lambda *parts: att(torch.cat([prompt, extra, *parts], 1))[0][:, -1]
    assert_close(y_a, whole(a), 1e-12, "branch a")
    assert_close(y_b, whole(b), 1e-12, "branch b")
    assert_close(y_ab, whole(a, b), 1e-12, "branch a continued after b was taken")


@torch.no_grad()
def test_steps_equal_forward_with_a_window_and_the_cache_stays_bounded():
    att = _attention(window=4)
    x = torch.randn(2, 40, 16, dtype=torch.float64)
    y, _ = att(x)
    cache, ys = att.init_state(2, dtype=torch.float64), []
    for t in range(40):
        y_t, cache = att.step(x[:, t], cache)
        ys.append(y_t)
        assert cache.k.shape[2] <= 3 and cache.buffer.k.shape[2] <= 8
    assert_close(torch.stack(ys, 1), y, 1e-12, "windowed steps vs forward")
