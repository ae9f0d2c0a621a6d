"""Mixed precision: every mixer, and a training step of a tiny model of each kind, under CPU bf16
autocast. The SSM cores run in float32 inside (no bf16 FFT exists; powers and scans need the
mantissa), so the only bf16 error is the projections': outputs within 3e-2 (scaled by
max(1, |y|)) of float32, and recurrent states stay float32 / complex64.

Tolerances by dtype, as mamba_ssm's tests: float64 1e-10 (the contract test), float32 ~1e-5
(implicit in the float32 contract runs), bf16 3e-2 here (8 mantissa bits: 2^-8 = 4e-3 per
rounding, a few roundings deep).
"""

import pytest
import torch
import torch.nn.functional as F

from longssm.layers.state import tensors
from conftest import KINDS, assert_close, small_model
from test_mixer_contract import D_MODEL, MIXERS

BF16_TOL = 3e-2


def autocast():
    return torch.autocast("cpu", dtype=torch.bfloat16)


@pytest.mark.parametrize("name", sorted(MIXERS))
def test_mixer_under_bf16_autocast(name):
    torch.manual_seed(1)
    mixer = MIXERS[name]()
    x = torch.randn(2, 37, D_MODEL)
    y32, s32 = mixer(x)
    with autocast():
        y16, s16 = mixer(x)
        y_step, _ = mixer.step(x[:, 0], mixer.init_state(2))
    assert torch.isfinite(y16).all() and torch.isfinite(y_step).all()
    assert_close(y16.float(), y32, BF16_TOL, f"{name}: bf16 autocast vs float32")
    if not name.startswith("attention"):  # recurrent states stay in full precision
        for t16, t32 in zip(tensors(s16), tensors(s32)):
            assert t16.dtype in (torch.float32, torch.complex64), t16.dtype
            assert_close(t16, t32, BF16_TOL, f"{name}: state")


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_training_step_under_bf16_autocast(kind):
    ids = torch.randint(0, 11, (2, 33))
    losses, grads = [], []
    for cast in (False, True):
        model = small_model(kind)
        with autocast() if cast else torch.autocast("cpu", enabled=False):
            logits, _ = model(ids[:, :-1])
            loss = F.cross_entropy(logits.float().flatten(0, 1), ids[:, 1:].flatten())
        loss.backward()
        losses.append(loss.item())
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]))
    assert all(torch.isfinite(g).all() for g in grads)
    assert abs(losses[1] - losses[0]) <= BF16_TOL * max(1.0, abs(losses[0]))
    cos = F.cosine_similarity(grads[0], grads[1], dim=0).item()
    assert cos > 0.99, f"bf16 gradient direction differs from float32 (cosine {cos:.4f})"
