"""SSM cores: the time-step scale (dt_scale) each time-continuous core takes, configure(), and
forward == step with a scaled step. float64, tolerance 1e-12."""

import math

import pytest
import torch
import torch.nn.functional as F

from longssm.kernels import selective_scan_ref
from longssm.layers import H3, DiagonalCore, SelectiveCore, SelectiveSSM, ShiftCore, configure
from conftest import assert_close

TOL = 1e-12


def test_diagonal_dt_scale_is_a_shifted_log_dt():
    torch.manual_seed(0)
    core = DiagonalCore(3, 8, discretization="zoh").double()
    u = torch.randn(2, 3, 20, dtype=torch.float64)
    core.dt_scale = 0.25
    y_scaled, s_scaled = core(u, return_state=True)
    core.dt_scale = 1.0
    with torch.no_grad():
        core.log_dt += math.log(0.25)
    y, s = core(u, return_state=True)
    assert_close(y_scaled, y, TOL, "dt_scale vs log_dt")
    assert_close(s_scaled, s, TOL, "state")


def test_selective_dt_scale_multiplies_the_softplus_step():
    torch.manual_seed(0)
    core = SelectiveCore(4, 3, dt_rank=2).double()
    u = torch.randn(2, 4, 9, dtype=torch.float64)
    core.dt_scale = 3.0
    y, s = core(u, return_state=True)
    dt, B, C = core.x_proj(u.transpose(1, 2)).split([2, 3, 3], dim=-1)
    delta = F.softplus(dt @ core.dt_proj.weight.T + core.dt_proj.bias) * 3.0
    y_ref, s_ref = selective_scan_ref(u, delta.transpose(1, 2), -torch.exp(core.A_log), B.transpose(1, 2),
                                      C.transpose(1, 2), core.D, return_state=True)
    assert_close(y, y_ref, TOL, "selective dt_scale")
    assert_close(s, s_ref, TOL, "state")


@pytest.mark.parametrize("make", [lambda: DiagonalCore(3, 8), lambda: SelectiveCore(3, 4, dt_rank=2)])
def test_forward_equals_steps_with_scaled_step(make):
    torch.manual_seed(0)
    core = make().double()
    core.dt_scale = 0.5
    u = torch.randn(2, 3, 10, dtype=torch.float64)
    y, s = core(u, return_state=True)
    st, ys = None, []
    for u_t in u.unbind(-1):
        y_t, st = core.step(u_t, st)
        ys.append(y_t)
    assert_close(torch.stack(ys, -1), y, TOL, "steps vs forward")
    assert_close(st, s, TOL, "state")


def test_configure_sets_every_time_continuous_core():
    model = torch.nn.ModuleList([H3(8, d_state=4, shift_state=4), SelectiveSSM(8, d_state=4)])
    configure(model, dt_scale=0.5, backend="ref")
    cores = [m for m in model.modules() if isinstance(m, (DiagonalCore, SelectiveCore, ShiftCore))]
    assert len(cores) == 3
    for c in cores:
        assert c.backend == "ref"
        assert getattr(c, "dt_scale", 0.5) == 0.5  # the shift core has no time step
    assert not hasattr(model[0].shift, "dt_scale")
    with pytest.raises(ValueError, match="dt_scale must be > 0"):
        configure(model, dt_scale=0.0)


def test_frozen_discretisation_follows_every_parameter_change():
    """Without autograd the discrete system is computed once and reused; an optimiser step, a
    loaded state dict or a new dt_scale recompute it."""
    from longssm.layers.cores import DiagonalCore

    core = DiagonalCore(4, 8)
    with torch.no_grad():
        first = core.frozen("discrete", core.discrete)
        assert core.frozen("discrete", core.discrete) is first  # remembered
        core.log_dt.add_(0.1)  # an in-place update, as an optimiser makes
        second = core.frozen("discrete", core.discrete)
        assert second is not first and not torch.equal(second[0], first[0])
        core.load_state_dict({k: v + 0.01 for k, v in core.state_dict().items()})
        third = core.frozen("discrete", core.discrete)
        assert not torch.equal(third[0], second[0])
        core.dt_scale = 2.0
        assert not torch.equal(core.frozen("discrete", core.discrete)[0], third[0])
        core.double()  # a new storage and dtype
        assert core.frozen("discrete", core.discrete)[0].dtype == torch.complex128
    y = core.frozen("discrete", core.discrete)[0]
    assert y.requires_grad  # with autograd: computed afresh, on the graph
