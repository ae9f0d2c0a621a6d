"""Diagonal SSM (S4D) and shift-SSM kernels: blocked Vandermonde, discretisation, state passing."""

import math

import pytest
import torch

from longssm.kernels import (
    discretize, s4d_init_A, shift_conv, shift_conv_ref, shift_kernel, ssm_conv, ssm_conv_ref,
    ssm_kernel, vandermonde, vandermonde_ref, vandermonde_transpose, vandermonde_transpose_ref,
)
from conftest import assert_close

C128 = torch.complex128


def random_system(H=3, N=4, dtype=C128):
    A = torch.complex(-torch.rand(H, N, dtype=torch.float64) - 0.05, torch.randn(H, N, dtype=torch.float64) * 3)
    dt = torch.rand(H, dtype=torch.float64) * 0.2 + 0.01
    dA, dB = discretize(A, torch.randn(H, N, dtype=C128), dt, "zoh")
    return dA.to(dtype), dB.to(dtype), torch.randn(H, N, dtype=dtype)


def loop_powers(coef, z, L, offset):
    """Slowest obvious definition: repeated multiplication."""
    out, p = [], coef * z**offset
    for _ in range(L):
        out.append(p.real.sum(-1))
        p = p * z
    return torch.stack(out, -1)


@pytest.mark.parametrize("L", [1, 2, 3, 17, 64, 101])
@pytest.mark.parametrize("offset", [0, 1])
def test_vandermonde_matches_ref_and_loop(L, offset):
    dA, _, C = random_system()
    coef = torch.randn(2, 3, 4, dtype=C128)
    expected = loop_powers(coef, dA, L, offset)
    assert_close(vandermonde_ref(coef, dA, L, offset), expected, 1e-12, "ref")
    assert_close(vandermonde(coef, dA, L, offset), expected, 1e-12, "blocked")


@pytest.mark.parametrize("L", [1, 5, 16, 99])
def test_vandermonde_transpose_matches_ref_and_loop(L):
    dA, _, _ = random_system()
    u = torch.randn(2, 3, L, dtype=torch.float64)
    x = torch.zeros(2, 3, 4, dtype=C128)
    for t in range(L):  # x <- z x + u_t: the state an input leaves behind, with B = 1
        x = dA * x + u[..., t, None]
    assert_close(vandermonde_transpose_ref(u, dA), x, 1e-12, "ref")
    assert_close(vandermonde_transpose(u, dA), x, 1e-12, "blocked")


@pytest.mark.parametrize("L", [1, 7, 50])
@pytest.mark.parametrize("offset", [0, 1])
@pytest.mark.parametrize("batch", [(), (2,)])
def test_vandermonde_grads_match_ref(L, offset, batch):
    """The blocked product's own backward (two more blocked products) against autograd through
    the full power table."""
    dA, _, _ = random_system()
    z = dA.clone().requires_grad_()
    coef = torch.randn(*batch, 3, 4, dtype=C128, requires_grad=True)
    w = torch.randn(*batch, 3, L, dtype=torch.float64)
    g = torch.autograd.grad((vandermonde(coef, z, L, offset) * w).sum(), (coef, z))
    g_ref = torch.autograd.grad((vandermonde_ref(coef, z, L, offset) * w).sum(), (coef, z))
    for a, b, what in zip(g, g_ref, ("coef", "z")):
        assert_close(a, b, 1e-11, f"grad {what}")


def test_float32_kernel_error():
    # Issue floor: blocked powers in complex64 stay within ~1e-6 of the float64 kernel.
    A = s4d_init_A(64, 32, "lin")
    dt = torch.exp(torch.linspace(math.log(1e-3), math.log(1e-1), 64, dtype=torch.float64))
    dA, dB = discretize(A, torch.ones_like(A), dt, "zoh")
    C = torch.randn(64, 32, dtype=C128) * 0.5
    K64 = ssm_kernel(dA, dB, C, 4096)
    K32 = ssm_kernel(dA.to(torch.complex64), dB.to(torch.complex64), C.to(torch.complex64), 4096)
    assert (K32.double() - K64).abs().max() / K64.abs().max() < 2e-6


def test_s4d_init_values():
    A = s4d_init_A(2, 4, "lin")
    assert torch.allclose(A[1], torch.tensor([-0.5 + 0j, -0.5 + math.pi * 1j, -0.5 + 2 * math.pi * 1j, -0.5 + 3 * math.pi * 1j], dtype=C128))
    A_inv = s4d_init_A(1, 4, "inv")
    assert A_inv[0, 0].imag.item() == pytest.approx(8 / math.pi * (8 - 1))
    with pytest.raises(ValueError, match="init must be one of"):
        s4d_init_A(1, 4, "legs")


def test_discretizations_against_definitions():
    A = torch.tensor([[-0.3 + 2j, -1.0 + 0.5j]], dtype=C128)
    B = torch.tensor([[1.0 + 0j, 0.5 - 1j]], dtype=C128)
    dt = torch.tensor([0.1], dtype=torch.float64)
    dA, dB = discretize(A, B, dt, "zoh")
    assert torch.allclose(dA, torch.exp(0.1 * A)) and torch.allclose(dB, (torch.exp(0.1 * A) - 1) / A * B)
    dA, dB = discretize(A, B, dt, "bilinear")
    # Tustin: (I - dt/2 A)^{-1}(I + dt/2 A), (I - dt/2 A)^{-1} dt B
    assert torch.allclose(dA * (1 - 0.05 * A), 1 + 0.05 * A)
    assert torch.allclose(dB * (1 - 0.05 * A), 0.1 * B)
    with pytest.raises(ValueError, match="discretization"):
        discretize(A, B, dt, "euler")


@pytest.mark.parametrize("L,chunk", [(1, 4096), (2, 1), (31, 7), (64, 64), (100, 16), (257, 4096)])
@pytest.mark.parametrize("with_state", [False, True])
def test_ssm_conv_state_passing_matches_recurrence(L, chunk, with_state):
    dA, dB, C = (t.clone().requires_grad_() for t in random_system())
    u = torch.randn(2, 3, L, dtype=torch.float64, requires_grad=True)
    D = torch.randn(3, dtype=torch.float64, requires_grad=True)
    x0 = torch.randn(2, 3, 4, dtype=C128, requires_grad=True) if with_state else None
    y, x = ssm_conv(u, dA, dB, C, D, x0, return_state=True, chunk_size=chunk)
    y_ref, x_ref = ssm_conv_ref(u, dA, dB, C, D, x0, return_state=True)
    assert_close(y, y_ref, 1e-11, "y")
    assert_close(x, x_ref, 1e-11, "final state")
    y_only, none = ssm_conv(u, dA, dB, C, D, x0, chunk_size=chunk, return_state=False)
    assert none is None and torch.equal(y_only, y)  # states between chunks are still passed
    w = torch.randn_like(y)
    inputs = (u, D, dA, dB, C) + ((x0,) if with_state else ())
    loss = lambda y, x: (y * w).sum() + (x.abs() ** 2).sum()
    grads = [torch.autograd.grad(lo, inputs, allow_unused=True) for lo in (loss(y, x), loss(y_ref, x_ref))]
    for t, g, g_ref in zip(inputs, *grads):  # unused (None): dA at L = 1 without a state, a zero gradient
        zero = torch.zeros_like(t)
        assert_close(zero if g is None else g, zero if g_ref is None else g_ref, 1e-10, "grad")


def test_ssm_kernel_is_impulse_response():
    dA, dB, C = random_system()
    u = torch.zeros(1, 3, 40, dtype=torch.float64)
    u[..., 0] = 1
    y, _ = ssm_conv_ref(u, dA, dB, C)
    assert_close(ssm_kernel(dA, dB, C, 40), y[0], 1e-12, "kernel")


def test_ssm_conv_no_grad_writes_in_place_buffer():
    dA, dB, C = random_system()
    u = torch.randn(1, 3, 50, dtype=torch.float64)
    with torch.no_grad():
        y, x = ssm_conv(u, dA, dB, C, return_state=True, chunk_size=8)
    y_ref, x_ref = ssm_conv_ref(u, dA, dB, C, return_state=True)
    assert_close(y, y_ref, 1e-11, "no-grad path")


def true_shift_ssm(u, B, C):
    """Slowest obvious definition: x_t = S x_{t-1} + B u_t with S the down-shift, y = C x."""
    H, N = B.shape
    x = torch.zeros(u.shape[0], H, N, dtype=u.dtype)
    ys = []
    for t in range(u.shape[-1]):
        x = torch.cat([torch.zeros_like(x[..., :1]), x[..., :-1]], -1) + B * u[..., t, None]
        ys.append((C * x).sum(-1))
    return torch.stack(ys, -1)


def test_shift_kernel_is_impulse_response_of_shift_ssm():
    B, C = torch.randn(3, 6, dtype=torch.float64), torch.randn(3, 6, dtype=torch.float64)
    u = torch.randn(2, 3, 20, dtype=torch.float64)
    y, _ = shift_conv(u, shift_kernel(B, C))
    assert_close(y, true_shift_ssm(u, B, C), 1e-12, "shift conv vs SSM recurrence")
    e1 = torch.zeros(3, 6, dtype=torch.float64)
    e1[:, 0] = 1
    assert torch.equal(shift_kernel(e1, C), C)  # B = e1: the kernel is C


@pytest.mark.parametrize("L", [1, 3, 6, 7, 40])
def test_shift_conv_matches_ref_with_window(L):
    K = torch.randn(3, 6, dtype=torch.float64, requires_grad=True)
    D = torch.randn(3, dtype=torch.float64)
    u = torch.randn(2, 3, L, dtype=torch.float64, requires_grad=True)
    window = torch.randn(2, 3, 6, dtype=torch.float64)
    y, w = shift_conv(u, K, D, window, return_state=True)
    y_ref, w_ref = shift_conv_ref(u, K, D, window, return_state=True)
    assert_close(y, y_ref, 1e-12, "y")
    assert torch.equal(w, w_ref)
    g = torch.autograd.grad(y.sin().sum(), (u, K))
    g_ref = torch.autograd.grad(y_ref.sin().sum(), (u, K))
    for a, b in zip(g, g_ref):
        assert_close(a, b, 1e-12, "grad")


def test_ssm_conv_bad_state_shape():
    dA, dB, C = random_system()
    with pytest.raises(ValueError, match="state must have shape"):
        ssm_conv(torch.randn(2, 3, 5, dtype=torch.float64), dA, dB, C, initial_state=torch.zeros(1, 3, 4, dtype=C128))
