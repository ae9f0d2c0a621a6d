"""The native backend's linear layer: the C++ matrix-vector kernel of decoding against the
definition in float64, and F.linear wherever it does not apply."""

import pytest
import torch
import torch.nn.functional as F

from longssm.kernels.native import entry as native_entry
from longssm.kernels.native_linear import MAX_ROWS, linear_native
from longssm.layers import H3, Linear, SelectiveSSM, configure
from longssm.models import LanguageModel
from conftest import assert_close, small_model

F64 = torch.float64


def definition(x, w, b):
    """Every output as an explicit sum over the inputs."""
    y = (x[..., None, :] * w).sum(-1)
    return y if b is None else y + b


@pytest.mark.parametrize("shape", [(1, 37), (3, 37), (MAX_ROWS, 37), (2, 1, 37), (37,)])
@pytest.mark.parametrize("bias", [True, False])
def test_matches_the_definition_in_float64(shape, bias):
    torch.manual_seed(0)
    x, w = torch.randn(*shape, dtype=F64), torch.randn(45, 37, dtype=F64)
    b = torch.randn(45, dtype=F64) if bias else None
    y = linear_native(x, w, b)
    assert y.shape == (*shape[:-1], 45)
    assert_close(y, definition(x, w, b), 1e-13, "native linear")


def test_float32_strided_rows_agree_with_f_linear():
    torch.manual_seed(0)
    x = torch.randn(4, 2 * 768)[:, ::2]  # rows of a strided view: copied, then the kernel
    w, b = torch.randn(3072, 768), torch.randn(3072)
    assert_close(linear_native(x, w, b), F.linear(x, w, b), 1e-5, "float32")


def test_what_it_does_not_cover_is_f_linear():
    torch.manual_seed(0)
    w, b = torch.randn(8, 6, requires_grad=True), torch.randn(8)
    many = torch.randn(MAX_ROWS + 1, 6)
    assert torch.equal(linear_native(many, w.detach(), b), F.linear(many, w.detach(), b))
    half = torch.randn(2, 6).bfloat16()
    assert torch.equal(linear_native(half, w.detach().bfloat16()), F.linear(half, w.detach().bfloat16()))
    x = torch.randn(2, 6)
    y = linear_native(x, w, b)  # training: autograd needs the PyTorch op
    y.sum().backward()
    assert y.grad_fn is not None and torch.equal(w.grad, x.sum(0).expand(8, 6))
    with torch.no_grad():
        assert_close(linear_native(x, w, b), F.linear(x, w, b), 1e-6, "no grad")


def test_configure_reaches_every_linear_layer_and_the_head():
    model = small_model("hybrid", backend="native")
    linears = [m for m in model.modules() if isinstance(m, Linear)]
    assert model.head in linears and len(linears) > 5
    assert {m.backend for m in linears} == {"native"}
    configure(model, backend="auto")
    assert {m.backend for m in linears} == {"auto"}
    assert isinstance(LanguageModel(model.config).head, Linear)


@pytest.mark.parametrize("kind", ["mamba", "hybrid", "h3"])
def test_native_decoding_equals_the_forward_in_float64(kind, monkeypatch):
    import longssm.kernels.native_linear as nl
    import longssm.kernels.native_steps as nm

    calls = []
    for module in (nl, nm):
        monkeypatch.setattr(module, "entry", lambda lib, sym: calls.append(sym) or native_entry(lib, sym))
    model = small_model(kind, backend="native").double().eval()
    ids = torch.randint(0, 11, (2, 9))
    with torch.no_grad():
        logits, _ = model(ids)
        in_forward = len(calls)  # the forward's 18 rows are within MAX_ROWS: its projections go native too
        s, steps = model.init_state(2, dtype=F64), []
        for t in range(9):
            out, s = model.step(ids[:, t], s)
            steps.append(out)
    assert_close(torch.stack(steps, 1), logits, 1e-10, "native steps vs forward")
    # every step's projections: a Mamba block's and an H3 layer's go through their fused steps
    # (tests/kernels/test_native_steps.py), the others through the linear kernel
    mamba = [m for m in model.modules() if isinstance(m, SelectiveSSM)]
    h3 = [m for m in model.modules() if isinstance(m, H3)]
    linears = sum(isinstance(m, Linear) for m in model.modules()) - sum(
        isinstance(m, Linear) for b in mamba + h3 for m in b.modules())
    step_calls = calls[in_forward:]
    assert in_forward > 0 and step_calls.count("longssm_gemv_f64") == 9 * linears
    assert step_calls.count("longssm_mamba_step_f64") == 9 * len(mamba)
    assert step_calls.count("longssm_h3_step_f64") == 9 * len(h3)
    assert len(step_calls) == 9 * (linears + len(mamba) + len(h3))
