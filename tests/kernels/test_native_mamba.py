"""The native backend's fused Mamba block step (kernels/csrc/mamba_step.cpp) against the block's
composed step (its modules, backend auto), and where the fused step must not apply."""

import pytest
import torch

import longssm.kernels.backend as backend
from longssm.layers import SelectiveSSM, configure
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


@pytest.fixture
def calls(monkeypatch):
    """How many times the fused step ran (returned a result, not None: "does not apply")."""
    count = [0]
    fused = backend.OPS["mamba_step"]["native"]

    def spy(*args):
        done = fused(*args)
        count[0] += done is not None
        return done

    monkeypatch.setitem(backend.OPS["mamba_step"], "native", spy)
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
    with torch.no_grad():
        ref, ref_state = run_steps(m, us, state)
        configure(m, backend="native")
        out, out_state = run_steps(m, us, state)
    assert calls[0] == len(us)
    assert_close(out, ref, tol, "out")
    assert_close(out_state.conv, ref_state.conv, tol, "conv state")
    assert_close(out_state.ssm, ref_state.ssm, tol, "ssm state")


@pytest.mark.parametrize("case", ["smr", "dt_scale", "per-step dt", "grad", "autocast"])
def test_where_it_does_not_apply_the_block_composes_its_modules(case, calls):
    m = block(torch.float32, **({"smr": True} if case == "smr" else {}))
    if case == "dt_scale":
        configure(m, dt_scale=0.5)
    u = torch.randn(2, 16)
    kw = {"dt": torch.full((2,), 0.5)} if case == "per-step dt" else {}
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
