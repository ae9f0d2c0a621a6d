import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from longssm.kernels import fftconv, fftconv_ref, next_fast_len
from conftest import assert_close


def direct(u, k, D):
    """The slowest obvious definition: a Python double loop."""
    B, H, L = u.shape
    y = torch.zeros_like(u)
    for t in range(L):
        for s in range(min(t + 1, k.shape[1])):
            y[..., t] += k[:, s] * u[..., t - s]
    return y + D[:, None] * u


@pytest.mark.parametrize("L,Lk", [(1, 1), (2, 1), (7, 7), (13, 5), (64, 64), (97, 31)])
def test_ref_equals_direct_sum(L, Lk):
    u = torch.randn(2, 3, L, dtype=torch.float64)
    k, D = torch.randn(3, Lk, dtype=torch.float64), torch.randn(3, dtype=torch.float64)
    assert_close(fftconv_ref(u, k, D), direct(u, k, D), 1e-12, "fftconv_ref vs loop")


@pytest.mark.parametrize("L,Lk,block", [(1, 1, None), (5, 3, None), (127, 127, 2), (300, 17, 1), (1000, 999, 4)])
def test_fftconv_matches_ref_values_and_grads(L, Lk, block):
    u = torch.randn(2, 5, L, dtype=torch.float64, requires_grad=True)
    k = torch.randn(5, Lk, dtype=torch.float64, requires_grad=True)
    D = torch.randn(5, dtype=torch.float64, requires_grad=True)
    w = torch.randn(2, 5, L, dtype=torch.float64)
    y = fftconv(u, k, D, channel_block=block)
    y_ref = fftconv_ref(u, k, D)
    assert_close(y, y_ref, 1e-12, "values")
    for g, g_ref in zip(torch.autograd.grad((y * w).sum(), (u, k, D)),
                        torch.autograd.grad((y_ref * w).sum(), (u, k, D))):
        assert_close(g, g_ref, 1e-11, "grads")


def test_float32_error_is_small():
    u, k = torch.randn(1, 4, 4096), torch.randn(4, 4096) / 64
    y = fftconv(u, k)
    y_ref = fftconv_ref(u.double(), k.double())
    assert_close(y.double(), y_ref, 1e-5, "float32 fftconv")


def test_no_circular_wraparound():
    # An impulse at the last position must not leak into early outputs.
    u = torch.zeros(1, 1, 10, dtype=torch.float64)
    u[..., -1] = 1.0
    y = fftconv(u, torch.ones(1, 10, dtype=torch.float64))
    assert y[..., :-1].abs().max() < 1e-14 and y[..., -1].item() == pytest.approx(1.0)


@pytest.mark.parametrize("n,expected", [(1, 1), (7, 8), (11, 12), (17, 18), (31, 32), (97, 100), (1025, 1080)])
def test_next_fast_len(n, expected):
    assert next_fast_len(n) == expected


def test_bad_inputs():
    u = torch.randn(1, 3, 8)
    with pytest.raises(ValueError, match="batch, channels, seq_len"):
        fftconv(u[0], torch.randn(3, 4))
    with pytest.raises(ValueError, match="kernel_len <= seq_len"):
        fftconv(u, torch.randn(3, 9))
    with pytest.raises(ValueError, match="channels=3"):
        fftconv(u, torch.randn(2, 4))
    with pytest.raises(ValueError, match="seq_len 0"):
        fftconv(torch.randn(1, 3, 0), torch.randn(3, 1))
    with pytest.raises(TypeError, match="floating-point"):
        fftconv(torch.ones(1, 3, 8, dtype=torch.long), torch.randn(3, 4))
    with pytest.raises(ValueError, match="D must have shape"):
        fftconv(u, torch.randn(3, 4), torch.randn(4))


@settings(max_examples=40, deadline=None)
@given(batch=st.integers(1, 3), H=st.integers(1, 5), L=st.integers(1, 70), data=st.data())
def test_fftconv_property_any_shape(batch, H, L, data):
    Lk = data.draw(st.integers(1, L))
    g = torch.Generator().manual_seed(L * 131 + Lk)
    u = torch.randn(batch, H, L, dtype=torch.float64, generator=g)
    k = torch.randn(H, Lk, dtype=torch.float64, generator=g)
    block = data.draw(st.one_of(st.none(), st.integers(1, H)))
    assert_close(fftconv(u, k, channel_block=block), fftconv_ref(u, k), 1e-12, f"L={L} Lk={Lk}")
