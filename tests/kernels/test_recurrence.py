"""The diagonal linear recurrence h_t = a_t h_{t-1} + b_t: fast scan, its reference twin, and the
slowest obvious definition (a Python loop over scalars), in float64; values and gradients."""

import inspect

import pytest
import torch

from longssm.kernels import linear_scan, linear_scan_ref
from conftest import assert_close

TOL = 1e-12


def scalar_loop(a, b, x0):
    """h[n, t, d] one scalar at a time."""
    a = a.expand(b.shape)
    out = torch.zeros_like(b)
    for n in range(b.shape[0]):
        for d in range(b.shape[2]):
            h = 0 if x0 is None else x0[n, d].item()
            for t in range(b.shape[1]):
                h = a[n, t, d].item() * h + b[n, t, d].item()
                out[n, t, d] = h
    return out


def make(complex_: bool, per_step: bool, with_state: bool, L=9):
    dtype = torch.complex128 if complex_ else torch.float64
    shape = (2, L, 3) if per_step else (3,)
    a = (torch.rand(shape, dtype=torch.float64) * 0.9 + 0.05).to(dtype)
    if complex_:
        a = a * torch.exp(1j * torch.rand(shape, dtype=torch.float64))
    b = torch.randn(2, L, 3, dtype=dtype)
    x0 = torch.randn(2, 3, dtype=dtype) if with_state else None
    return a, b, x0


@pytest.mark.parametrize("complex_", [False, True])
@pytest.mark.parametrize("per_step", [False, True])
@pytest.mark.parametrize("with_state", [False, True])
def test_fast_and_ref_equal_the_scalar_loop(complex_, per_step, with_state):
    a, b, x0 = make(complex_, per_step, with_state)
    expected = scalar_loop(a, b, x0)
    for op in (linear_scan, linear_scan_ref):
        h, last = op(a, b, x0, return_state=True)
        assert_close(h, expected, TOL, op.__name__)
        assert_close(last, expected[:, -1], TOL, op.__name__ + " last state")
        assert op(a, b, x0)[1] is None  # return_state=False


@pytest.mark.parametrize("complex_", [False, True])
@pytest.mark.parametrize("per_step", [False, True])
def test_fast_gradients_equal_ref(complex_, per_step):
    a, b, x0 = make(complex_, per_step, True, L=12)
    w = torch.randn(b.shape, dtype=b.dtype)
    grads = []
    for op in (linear_scan, linear_scan_ref):
        inputs = [t.clone().requires_grad_() for t in (a, b, x0)]
        h, last = op(*inputs, return_state=True)
        loss = (h * w).real.sum() + last.abs().pow(2).sum()
        grads.append(torch.autograd.grad(loss, inputs))
    for g, g_ref in zip(*grads):
        assert_close(g, g_ref, 1e-10, "gradient")


def test_gradcheck_real_and_complex():
    for complex_ in (False, True):
        a, b, x0 = make(complex_, True, True, L=5)
        inputs = tuple(t.requires_grad_() for t in (a, b, x0))
        assert torch.autograd.gradcheck(lambda *t: linear_scan(*t, return_state=True), inputs)


def test_same_signature_and_errors():
    assert inspect.signature(linear_scan) == inspect.signature(linear_scan_ref)
    b = torch.randn(2, 4, 3)
    with pytest.raises(ValueError, match="does not broadcast"):
        linear_scan(torch.rand(5), b)
    with pytest.raises(ValueError, match="initial_state"):
        linear_scan(torch.rand(3), b, torch.zeros(2, 4))
    with pytest.raises(ValueError, match="seq_len >= 1"):
        linear_scan(torch.rand(3), b[:, :0])
