import math

import pytest
import torch

from longssm.kernels import selective_scan, selective_scan_ref, selective_scan_step
from longssm.kernels.compiled_scan import selective_scan_compiled
from longssm.kernels.native_scan import selective_scan_native, selective_scan_step_native
from conftest import assert_close

F64 = torch.float64
#: the fast paths checked against the reference: cache-blocked eager, torch.compile'd blocks, the C++ kernel
FAST = pytest.mark.parametrize("scan", [selective_scan, selective_scan_compiled, selective_scan_native],
                               ids=["auto", "compile", "native"])


def make(batch=2, D=3, N=4, L=20, **kw):
    g = lambda *s: torch.randn(*s, dtype=F64, requires_grad=True)
    return dict(u=g(batch, D, L), delta=g(batch, D, L),
                A=(-torch.rand(D, N, dtype=F64) * 2).requires_grad_(), B=g(batch, N, L), C=g(batch, N, L), **kw)


def scalar_loop(u, delta, A, B, C, D, z, delta_bias, x0):
    """Slowest obvious definition: every scalar of the recurrence in Python."""
    batch, Dm, L = u.shape
    N = A.shape[1]
    y = torch.zeros(batch, Dm, L, dtype=F64)
    for b in range(batch):
        for d in range(Dm):
            for n in range(N):
                x = x0[b, d, n].item()
                for t in range(L):
                    dt = torch.nn.functional.softplus(delta[b, d, t] + delta_bias[d]).item()
                    x = math.exp(dt * A[d, n].item()) * x + dt * B[b, n, t].item() * u[b, d, t].item()
                    y[b, d, t] += C[b, n, t].item() * x
    silu = z * torch.sigmoid(z)
    return (y + u * D[:, None]) * silu


def test_ref_equals_scalar_loop():
    args = make(L=7)
    D, z, bias, x0 = torch.randn(3, dtype=F64), torch.randn(2, 3, 7, dtype=F64), torch.randn(3, dtype=F64), torch.randn(2, 3, 4, dtype=F64)
    y, _ = selective_scan_ref(**args, D=D, z=z, delta_bias=bias, delta_softplus=True, initial_state=x0)
    expected = scalar_loop(*(t.detach() for t in args.values()), D, z, bias, x0)
    assert_close(y.detach(), expected, 1e-12, "ref vs scalar loop")


@pytest.mark.parametrize("L,segment", [(1, 4), (2, 1), (5, 8), (37, 8), (64, 16), (131, 32), (50, None)])
@pytest.mark.parametrize("full", [False, True])
@FAST
def test_chunked_matches_ref_values_and_grads(L, segment, full, scan):
    args = make(L=L)
    extra = {}
    if full:
        extra = dict(D=torch.randn(3, dtype=F64, requires_grad=True), z=torch.randn(2, 3, L, dtype=F64, requires_grad=True),
                     delta_bias=torch.randn(3, dtype=F64, requires_grad=True), delta_softplus=True,
                     initial_state=torch.randn(2, 3, 4, dtype=F64, requires_grad=True))
    else:
        args["delta"] = (args["delta"].detach().abs() * 0.5).requires_grad_()
    y, x = scan(**args, **extra, return_state=True, segment_size=segment)
    y_ref, x_ref = selective_scan_ref(**args, **extra, return_state=True)
    assert_close(y, y_ref, 1e-12, "y")
    assert_close(x, x_ref, 1e-12, "last state")
    inputs = [t for t in list(args.values()) + list(extra.values()) if isinstance(t, torch.Tensor)]
    w = torch.randn_like(y)
    loss = lambda y, x: (y * w).sum() + (x * x).sum()
    for g, g_ref in zip(torch.autograd.grad(loss(y, x), inputs), torch.autograd.grad(loss(y_ref, x_ref), inputs)):
        assert_close(g, g_ref, 1e-11, "grad")


@FAST
def test_only_y_used_in_loss(scan):
    args = make(L=40)
    y, none = scan(**args, segment_size=7)
    assert none is None  # return_state=False: no last state
    y_ref, _ = selective_scan_ref(**args)
    for g, g_ref in zip(torch.autograd.grad(y.sum(), list(args.values())), torch.autograd.grad(y_ref.sum(), list(args.values()))):
        assert_close(g, g_ref, 1e-11, "grad")


def test_step_matches_ref():
    args = {k: v.detach() for k, v in make(L=9).items()}
    D, z, bias = torch.randn(3, dtype=F64), torch.randn(2, 3, 9, dtype=F64), torch.randn(3, dtype=F64)
    y_ref, x_ref = selective_scan_ref(**args, D=D, z=z, delta_bias=bias, delta_softplus=True, return_state=True)
    x, ys = None, []
    for t in range(9):
        y_t, x = selective_scan_step(args["u"][..., t], args["delta"][..., t], args["A"], args["B"][..., t],
                                     args["C"][..., t], x, D, z[..., t], bias, True)
        ys.append(y_t)
    assert_close(torch.stack(ys, -1), y_ref, 1e-13, "steps")
    assert_close(x, x_ref, 1e-13, "state")


@pytest.mark.parametrize("scan", [selective_scan_compiled, selective_scan_native], ids=["compile", "native"])
def test_float32_matches_ref(scan):
    """The compiled blocks and the C++ kernel (its polynomial exp) in the dtype models train in, at a
    model-like width: 24 channels leave the C++ kernel's second group of 16 lanes part-empty."""
    args = {k: v.detach().float().requires_grad_() for k, v in make(batch=2, D=24, N=16, L=70).items()}
    y, x = scan(**args, delta_softplus=True, return_state=True)
    y_ref, x_ref = selective_scan_ref(**args, delta_softplus=True, return_state=True)
    assert_close(y, y_ref, 1e-5, "y")
    assert_close(x, x_ref, 1e-5, "last state")
    inputs = list(args.values())
    grads = torch.autograd.grad((y * y_ref.detach()).sum(), inputs)
    for g, g_ref in zip(grads, torch.autograd.grad((y_ref * y_ref.detach()).sum(), inputs)):
        assert_close(g, g_ref, 1e-4, "grad")


def test_bad_inputs():
    args = {k: v.detach() for k, v in make(L=5).items()}
    with pytest.raises(ValueError, match=r"B must have shape \(2, 4, 5\)"):
        selective_scan(**{**args, "B": torch.randn(2, 4, 6, dtype=F64)})
    with pytest.raises(ValueError, match="seq_len >= 1"):
        selective_scan(**{k: v[..., :0] if v.dim() == 3 else v for k, v in args.items()})
    with pytest.raises(TypeError, match="floating-point"):
        selective_scan(**{**args, "u": args["u"].long()})
    with pytest.raises(ValueError, match="initial_state"):
        selective_scan(**args, initial_state=torch.zeros(2, 3, 5, dtype=F64))


@pytest.mark.parametrize("dtype,tol", [(F64, 1e-13), (torch.float32, 2e-6)], ids=["f64", "f32"])
@pytest.mark.parametrize("softplus,state", [(True, True), (False, False)], ids=["softplus-state", "zero-state"])
def test_native_step_matches_the_pytorch_step(dtype, tol, softplus, state):
    """The fused C++ decoding step against the PyTorch step (itself checked against the reference
    above), with and without the optional inputs; 24 channels, 16 states, batch 3."""
    g = torch.Generator().manual_seed(0)
    r = lambda *s: torch.randn(*s, generator=g, dtype=dtype)  # noqa: E731
    args = (r(3, 24), r(3, 24), -r(24, 16).abs(), r(3, 16), r(3, 16), r(3, 24, 16) if state else None)
    extra = {"D": r(24), "z_t": r(3, 24), "delta_bias": r(24)} if softplus else {}
    delta = args[1] if softplus else args[1].abs()
    y, x = selective_scan_step_native(args[0], delta, *args[2:], **extra, delta_softplus=softplus)
    y_ref, x_ref = selective_scan_step(args[0], delta, *args[2:], **extra, delta_softplus=softplus)
    assert_close(y, y_ref, tol, "y")
    assert_close(x, x_ref, tol, "state")


def test_native_step_refuses_bad_shapes_and_keeps_gradients():
    u, A, B = torch.randn(2, 8), -torch.rand(8, 4), torch.randn(2, 4)
    with pytest.raises(ValueError, match="state"):
        selective_scan_step_native(u, u, A, B, B, torch.zeros(2, 8, 5))
    with pytest.raises(ValueError, match="B_t"):
        selective_scan_step_native(u, u, A, B[:, :3], B, None)
    with pytest.raises(TypeError, match="one dtype"):
        selective_scan_step_native(u, u, A.double(), B, B, None)
    u.requires_grad_()
    y, _ = selective_scan_step_native(u, u.detach().abs(), A, B, B, None)  # autograd records: the PyTorch step
    y.sum().backward()
    assert u.grad is not None and u.grad.abs().sum() > 0
