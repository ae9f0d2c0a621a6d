"""The backend switch: which implementation each op resolves to, from the config or the
environment, and that fast ops and their twins share one signature."""

import inspect
import logging

import pytest
import torch

from longssm.kernels import backend
from longssm.layers import H3, configure


@pytest.mark.parametrize("op", sorted(backend.OPS))
def test_twins_have_identical_signatures(op):
    impls = backend.OPS[op]
    assert set(impls) == set(backend.BACKENDS)
    if op in ("mamba_step", "h3_step"):  # fused block steps only the native backend has; layers compose elsewhere
        assert [b for b, impl in impls.items() if impl is not None] == ["native"]
        return
    assert len({inspect.signature(impl) for impl in impls.values()}) == 1
    params = inspect.signature(impls["auto"]).parameters
    if op == "selective_scan_step":  # the one single-position op: a state in, the new state out
        assert list(params)[5] == "state"
    elif op != "linear":  # the one stateless op
        assert params["initial_state"].default is None and params["return_state"].default is False


def test_resolution_config_then_environment(monkeypatch):
    monkeypatch.delenv(backend.ENV, raising=False)
    assert backend.get_op("ssm_conv") is backend.OPS["ssm_conv"]["auto"]
    assert backend.get_op("ssm_conv", "ref") is backend.OPS["ssm_conv"]["ref"]
    monkeypatch.setenv(backend.ENV, "ref")
    assert backend.get_op("ssm_conv", "auto") is backend.OPS["ssm_conv"]["ref"]
    monkeypatch.setenv(backend.ENV, "triton")
    with pytest.raises(ValueError, match="LONGSSM_BACKEND must be one of"):
        backend.get_op("ssm_conv")
    with pytest.raises(ValueError, match="backend must be one of"):
        backend.get_op("ssm_conv", "cuda")
    with pytest.raises(ValueError, match="unknown op"):
        backend.get_op("conv2d")


def test_layers_call_the_configured_backend(monkeypatch, caplog):
    calls = []
    for name in ("ssm_conv", "shift_conv"):
        ref = backend.OPS[name]["ref"]
        monkeypatch.setitem(backend.OPS[name], "ref", lambda *a, _f=ref, _n=name, **k: calls.append(_n) or _f(*a, **k))
    monkeypatch.setattr(backend, "_logged", set())
    h3 = H3(8, d_state=4, shift_state=4)
    x = torch.randn(1, 5, 8)
    h3(x)
    assert calls == []
    configure(h3, backend="ref")
    with caplog.at_level(logging.INFO, logger="longssm"):
        h3(x)
        h3(x)
    assert calls == ["shift_conv", "ssm_conv"] * 2
    assert [r.getMessage() for r in caplog.records].count("longssm kernel backend: ref") == 1  # logged once
    with pytest.raises(ValueError, match="backend must be one of"):
        configure(h3, backend="fast")
