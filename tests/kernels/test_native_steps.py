"""The native backend's fused block steps (kernels/csrc/mamba_step.cpp, h3_step.cpp) against the
blocks' composed steps (their modules, backend auto), and where a fused step must not apply."""

import pytest
import torch

import longssm.kernels.backend as backend
from longssm.kernels.native_linear import MAX_ROWS
from longssm.layers import H3, SelectiveSSM, configure
from longssm.layers.h3 import H3State
from longssm.layers.selective import MambaState
from conftest import assert_close


def block(dtype, **options):
    torch.manual_seed(0)
    m = SelectiveSSM(16, d_state=4, **options).to(dtype)
    with torch.no_grad():  # away from the init: every parameter matters, dt crosses softplus' threshold 20
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.3)
        selective = getattr(m.core, "inner", m.core)
        selective.dt_proj.bias[:8] += 25.0
    return m


def run_steps(m, us, state):
    ys = []
    for u in us:
        y, state = m.step(u, state)
        ys.append(y)
    return torch.stack(ys, 1), state


def composed_then_fused(m, us, state, calls):
    """(composed outputs and state, fused outputs and state) over the steps ``us``: the block
    with backend auto, then native, which must take its fused step at every position."""
    with torch.no_grad():
        ref = run_steps(m, us, state)
        configure(m, backend="native")
        out = run_steps(m, us, state)
    assert calls[0] == len(us)
    return ref, out


@pytest.fixture
def calls(monkeypatch):
    """How many times a fused step ran (returned a result, not None: "does not apply")."""
    count = [0]
    for op in ("mamba_step", "h3_step"):
        def spy(*args, _fused=backend.OPS[op]["native"]):
            done = _fused(*args)
            count[0] += done is not None
            return done

        monkeypatch.setitem(backend.OPS[op], "native", spy)
    return count


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 2e-5)])
@pytest.mark.parametrize("d_conv", [4, 2, 1])
@pytest.mark.parametrize("batch,start", [(1, "zero"), (3, "zero"), (3, "state")])
def test_fused_step_equals_the_composed_step(dtype, tol, d_conv, batch, start, calls):
    m = block(dtype, d_conv=d_conv)
    us = torch.randn(6, batch, 16, dtype=dtype)
    state = None
    if start == "state":
        state = MambaState(torch.randn(batch, m.d_inner, d_conv - 1, dtype=dtype),
                           torch.randn(batch, m.d_inner, 4, dtype=dtype))
    (ref, ref_state), (out, out_state) = composed_then_fused(m, us, state, calls)
    assert_close(out, ref, tol, "out")
    assert_close(out_state.conv, ref_state.conv, tol, "conv state")
    assert_close(out_state.ssm, ref_state.ssm, tol, "ssm state")


@pytest.mark.parametrize("case", ["smr", "dt_scale", "per-step dt", "grad", "autocast", "rows"])
def test_where_it_does_not_apply_the_block_composes_its_modules(case, calls):
    m = block(torch.float32, **({"smr": True} if case == "smr" else {}))
    if case == "dt_scale":
        configure(m, dt_scale=0.5)
    u = torch.randn(MAX_ROWS + 1 if case == "rows" else 2, 16)
    kw = {"dt": torch.full((u.shape[0],), 0.5)} if case == "per-step dt" else {}
    ctx = torch.autocast("cpu", dtype=torch.bfloat16) if case == "autocast" else torch.no_grad()
    if case == "grad":
        ctx = torch.enable_grad()
    with ctx:
        ref, _ = m.step(u, None, **kw)
        configure(m, backend="native")
        out, _ = m.step(u, None, **kw)
    assert calls[0] == 0
    assert_close(out.float(), ref.float(), 1e-5, case)
    if case == "grad":
        out.sum().backward()
        assert m.in_proj.weight.grad is not None


def h3(dtype, **options):
    torch.manual_seed(0)
    m = H3(16, d_state=8, shift_state=4, **options).to(dtype)
    with torch.no_grad():  # away from the init: every parameter matters
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    return m


def h3_state(m, batch, dtype):
    cdtype = torch.complex128 if dtype == torch.float64 else torch.complex64
    return H3State(torch.randn(batch, 16, 4, dtype=dtype), torch.randn(batch, 1, 1, 16, 4, dtype=cdtype))


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 2e-5)])
@pytest.mark.parametrize("batch,start", [(1, "zero"), (3, "zero"), (3, "state")])
@pytest.mark.parametrize("dt_scale", [1.0, 0.5])
def test_fused_h3_step_equals_the_composed_step(dtype, tol, batch, start, dt_scale, calls):
    m = h3(dtype)
    configure(m, dt_scale=dt_scale)
    xs = torch.randn(6, batch, 16, dtype=dtype)
    state = h3_state(m, batch, dtype) if start == "state" else None
    (ref, ref_state), (out, out_state) = composed_then_fused(m, xs, state, calls)
    assert_close(out, ref, tol, "out")
    assert_close(out_state.shift, ref_state.shift, tol, "shift window")
    assert out_state.ssm.shape == ref_state.ssm.shape and out_state.ssm.dtype == ref_state.ssm.dtype
    assert_close(torch.view_as_real(out_state.ssm), torch.view_as_real(ref_state.ssm), tol, "ssm state")


@pytest.mark.parametrize("options", [{"head_dim": 2}, {"use_gate": False}, {"use_shift": False},
                                     {"long_core": "s5"}, {"smr": True}], ids=str)
def test_other_h3_layers_compose_their_modules(options, calls):
    m = h3(torch.float32, **options)
    x = torch.randn(2, 16)
    with torch.no_grad():
        ref, _ = m.step(x, None)
        configure(m, backend="native")
        out, _ = m.step(x, None)
    assert calls[0] == 0
    assert_close(out, ref, 1e-5, str(options))


def test_h3_under_autograd_composes_its_modules(calls):
    m = h3(torch.float32)
    configure(m, backend="native")
    out, _ = m.step(torch.randn(2, 16), None)
    out.sum().backward()
    assert calls[0] == 0 and m.in_proj.weight.grad is not None
