"""S5 (per-step time steps, the recurrence against a Python loop) and State Memory Replay (the
identity at initialisation, per-step dt passed through). float64; tolerances stated per test."""

import pytest
import torch

from longssm.layers import H3, S4D, S5, S5Core, SelectiveSSM, SMRCore
from conftest import assert_close

TOL = 1e-12
F64 = torch.float64


def s5_core():
    torch.manual_seed(0)
    core = S5Core(3, 4).double()
    with torch.no_grad():  # steps of order 1, so that per-step changes matter
        core.log_step.uniform_(-1.0, 0.5)
    return core


def test_s5_equals_a_python_loop_with_per_step_dt():
    core = s5_core()
    u = torch.randn(2, 3, 11, dtype=F64)
    dt = torch.rand(2, 11, dtype=F64) * 2 + 0.1
    x0 = torch.randn(2, 4, dtype=torch.complex128)
    y, last = core(u, x0, return_state=True, dt=dt)
    Lam = torch.complex(-torch.exp(core.A_log_re), core.A_im)
    B, C = torch.view_as_complex(core.B), torch.view_as_complex(core.C)
    step = torch.exp(core.log_step)
    ys = torch.zeros_like(u)
    for b in range(2):
        x = x0[b].clone()
        for t in range(11):
            dA = torch.exp(Lam * step * dt[b, t])
            x = dA * x + (dA - 1) / Lam * (B @ u[b, :, t].to(B.dtype))
            ys[b, :, t] = 2 * (C @ x).real + core.D * u[b, :, t]
        assert_close(last[b], x, TOL, "last state")
    assert_close(y, ys, TOL, "S5 vs loop")


@pytest.mark.parametrize("c", [0.25, 1.0, 4.0])
def test_constant_per_step_dt_equals_the_scalar_step(c):
    core = s5_core()
    u = torch.randn(2, 3, 9, dtype=F64)
    y_dt, s_dt = core(u, return_state=True, dt=torch.full((2, 9), c, dtype=F64))
    core.dt_scale = c
    y, s = core(u, return_state=True)
    assert_close(y_dt, y, TOL, "S5 constant dt vs dt_scale")
    assert_close(s_dt, s, TOL, "state")
    torch.manual_seed(0)
    mamba = SelectiveSSM(6, d_state=3).double()
    x = torch.randn(2, 9, 6, dtype=F64)
    y_dt, _ = mamba(x, dt=torch.full((2, 9), c, dtype=F64))
    mamba.core.dt_scale = c
    assert_close(y_dt, mamba(x)[0], TOL, "selective constant dt vs dt_scale")


@pytest.mark.parametrize("make", [lambda: S5(6, d_state=3, smr=True), lambda: H3(6, d_state=4, long_core="s5"),
                                  lambda: SelectiveSSM(6, d_state=3, smr=True)])
def test_per_step_dt_forward_equals_steps_and_chunks(make):
    torch.manual_seed(0)
    mixer = make().double()
    x = torch.randn(2, 10, 6, dtype=F64)
    dt = torch.rand(2, 10, dtype=F64) * 2 + 0.1
    y, s = mixer(x, dt=dt)
    st, ys = mixer.init_state(2, dtype=F64), []
    for t in range(10):
        y_t, st = mixer.step(x[:, t], st, dt=dt[:, t])
        ys.append(y_t)
    assert_close(torch.stack(ys, 1), y, 1e-10, "steps vs forward")
    y1, s1 = mixer(x[:, :4], dt=dt[:, :4])
    y2, _ = mixer(x[:, 4:], s1, dt=dt[:, 4:])
    assert_close(torch.cat([y1, y2], 1), y, 1e-10, "chunks vs forward")


def test_time_invariant_mixers_refuse_a_per_step_dt():
    x = torch.randn(1, 5, 6)
    with pytest.raises(ValueError, match="DiagonalCore is time-invariant.*dt_scale"):
        S4D(6, d_state=4)(x, dt=torch.ones(1, 5))
    with pytest.raises(ValueError, match="time-invariant"):
        H3(6, d_state=4)(x, dt=torch.ones(1, 5))


MIXERS = {
    "s4d": lambda **kw: S4D(6, d_state=4, **kw), "s5": lambda **kw: S5(6, d_state=3, **kw),
    "h3": lambda **kw: H3(6, d_state=4, head_dim=2, **kw), "h3-s5": lambda **kw: H3(6, d_state=4, long_core="s5", **kw),
    "mamba": lambda **kw: SelectiveSSM(6, d_state=3, **kw),
}


@pytest.mark.parametrize("name", sorted(MIXERS))
@pytest.mark.parametrize("gate, conv, tol", [("2sigmoid", "depthwise", 1e-14), ("2sigmoid", "full", 1e-14),
                                             ("sigmoid", "depthwise", 1e-3)])
def test_smr_starts_at_the_identity(name, gate, conv, tol):
    """SMR at initialisation leaves the mixer's output unchanged: exactly (to float64 round-off,
    1e-14) with the 2*sigmoid gate, within 1e-3 (sigmoid(8) = 1 - 3.4e-4 on every input) with the
    sigmoid gate. SMR draws no random numbers, so both mixers get the same weights."""
    x = torch.randn(2, 12, 6, dtype=F64)
    torch.manual_seed(0)
    plain = MIXERS[name]().double()
    torch.manual_seed(0)
    smr = MIXERS[name](smr=True, smr_gate=gate, smr_conv=conv).double()
    assert any(isinstance(m, SMRCore) for m in smr.modules())
    assert_close(smr(x)[0], plain(x)[0], tol, f"{name} with SMR at init")
    y, _ = smr(x)
    y.sum().backward()
    smr_core = next(m for m in smr.modules() if isinstance(m, SMRCore))
    assert smr_core.weight.grad.abs().sum() > 0  # the identity is a starting point, not a fixed point


def test_smr_options_are_checked():
    with pytest.raises(ValueError, match="smr_gate"):
        S4D(6, d_state=4, smr=True, smr_gate="tanh")
    with pytest.raises(ValueError, match="smr_conv"):
        S4D(6, d_state=4, smr=True, smr_conv="dense")
    with pytest.raises(ValueError, match="smr_kernel"):
        S4D(6, d_state=4, smr=True, smr_kernel=0)
