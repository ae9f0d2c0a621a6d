"""The state contract (docs/architecture.md), one parametrised test over every mixer and its
variants, on both kernel backends (``auto``: the fast paths; ``ref``: the reference twins).

All in float64 with tolerance 1e-10 (relative to max(1, |y|)): every path is exact arithmetic up
to FFT round-off, which is ~1e-14 at these sizes.
"""

import random

import pytest
import torch

from longssm.kernels.backend import BACKENDS
from longssm.layers import (
    H3, S5, Attention, H3State, KVCache, S4D, S4DState, SelectiveSSM, ShiftSSM, SMRCore, configure, detach_state,
    map_tensors,
)
from longssm.layers.state import tensors
from conftest import assert_close

D_MODEL = 8
TOL = 1e-10

MIXERS = {
    "s4d-zoh-lin": lambda: S4D(D_MODEL, d_state=8),
    "s4d-bilinear-inv": lambda: S4D(D_MODEL, d_state=8, init="inv", discretization="bilinear", chunk_size=5),
    "shift": lambda: ShiftSSM(D_MODEL, d_state=6),
    "s4d-linear-out": lambda: S4D(D_MODEL, d_state=8, postact="linear"),
    "h3": lambda: H3(D_MODEL, d_state=8, shift_state=6),
    "h3-heads-chunked": lambda: H3(D_MODEL, d_state=8, head_dim=2, shift_state=6, chunk_size=7),
    "h3-shift-only": lambda: H3(D_MODEL, d_state=8, shift_state=6, use_diag=False),
    "h3-diag-only": lambda: H3(D_MODEL, d_state=8, use_shift=False),
    "h3-no-gate": lambda: H3(D_MODEL, d_state=8, head_dim=4, shift_state=6, use_gate=False),
    "mamba": lambda: SelectiveSSM(D_MODEL, d_state=4, segment_size=4),
    "s5": lambda: S5(D_MODEL, d_state=5),
    "h3-s5-long-core": lambda: H3(D_MODEL, d_state=4, head_dim=2, shift_state=6, long_core="s5"),
    "s4d-smr": lambda: S4D(D_MODEL, d_state=8, chunk_size=5, smr=True),
    "s5-smr-full-sigmoid": lambda: S5(D_MODEL, d_state=5, smr=True, smr_kernel=3, smr_conv="full", smr_gate="sigmoid"),
    "h3-smr": lambda: H3(D_MODEL, d_state=8, head_dim=2, shift_state=6, smr=True),
    "mamba-smr-k1": lambda: SelectiveSSM(D_MODEL, d_state=4, segment_size=4, smr=True, smr_kernel=1),
    "attention": lambda: Attention(D_MODEL, n_heads=2),
    "attention-window": lambda: Attention(D_MODEL, n_heads=2, window=5),
    "attention-norotary": lambda: Attention(D_MODEL, n_heads=1, use_rotary=False, window=3),
}


def make(name, backend="auto"):
    torch.manual_seed(1)
    mixer = MIXERS[name]().double()
    for m in mixer.modules():  # SMR starts at the identity: give its filter something to do
        if isinstance(m, SMRCore):
            with torch.no_grad():
                m.weight.normal_(0, 0.5)
                m.bias.normal_(0, 0.5)
    configure(mixer, backend=backend)
    return mixer


def same_state(a, b, tol=TOL):
    la, lb = [], []
    map_tensors(la.append, a), map_tensors(lb.append, b)
    assert len(la) == len(lb)
    for x, y in zip(la, lb):
        assert x.shape == y.shape
        assert_close(x, y, tol, "state")


@pytest.fixture(params=[(n, b) for n in sorted(MIXERS) for b in BACKENDS], ids=lambda p: f"{p[0]}-{p[1]}")
def mixer(request):
    return make(*request.param)


@pytest.mark.parametrize("name", sorted(MIXERS))
def test_backends_agree_values_and_gradients(name):
    """Equality 3: the fast path equals the reference twins, outputs, final states and gradients
    (of the input, the carried state and every parameter), starting from a carried state."""
    fast, ref = make(name, "auto"), make(name, "ref")
    x0 = torch.randn(2, 6, D_MODEL, dtype=torch.float64)
    x = torch.randn(2, 11, D_MODEL, dtype=torch.float64, requires_grad=True)
    w = torch.randn(2, 11, D_MODEL, dtype=torch.float64)
    grads = []
    for m in (fast, ref):
        s0 = m(x0)[1]
        y, s = m(x, s0)
        loss = (y * w).sum() + sum(t.abs().pow(2).sum() for t in tensors(s))
        grads.append((y, s, torch.autograd.grad(loss, [x, *m.parameters()], allow_unused=True)))
    (y_f, s_f, g_f), (y_r, s_r, g_r) = grads
    assert_close(y_f, y_r, TOL, "fast vs ref output")
    same_state(s_f, s_r)
    for a, b in zip(g_f, g_r):
        assert (a is None) == (b is None)
        if a is not None:
            assert_close(a, b, TOL, "fast vs ref gradient")


def test_forward_equals_steps(mixer):
    x = torch.randn(2, 13, D_MODEL, dtype=torch.float64)
    y, state = mixer(x)
    s = mixer.init_state(2, dtype=torch.float64)
    ys = []
    for x_t in x.unbind(1):
        y_t, s = mixer.step(x_t, s)
        ys.append(y_t)
    assert_close(torch.stack(ys, 1), y, TOL, "steps vs forward")
    same_state(s, state)


def test_forward_without_state_is_the_same_output(mixer):
    x = torch.randn(2, 13, D_MODEL, dtype=torch.float64)
    s0 = mixer(x[:, :5])[1]
    for state in (None, s0):
        y, s = mixer(x, state)
        y_only, none = mixer(x, state, return_state=False)
        assert none is None and torch.equal(y_only, y)


@pytest.mark.parametrize("seed", range(4))
def test_chunked_forward_with_carried_state(mixer, seed):
    rng = random.Random(seed)
    L = rng.choice([11, 17, 23, 31])
    cuts = sorted(rng.sample(range(1, L), 3))
    if seed == 0:
        cuts = [1, 2, L - 1]  # chunks of length 1 at both ends
    x = torch.randn(2, L, D_MODEL, dtype=torch.float64)
    y_full, s_full = mixer(x)
    ys, s = [], None
    for a, b in zip([0] + cuts, cuts + [L]):
        y, s = mixer(x[:, a:b], s)
        ys.append(y)
    assert_close(torch.cat(ys, 1), y_full, TOL, f"chunks {cuts}")
    same_state(s, s_full)


def test_zero_state_equals_no_state(mixer):
    x = torch.randn(3, 7, D_MODEL, dtype=torch.float64)
    y0, s0 = mixer(x)
    y1, s1 = mixer(x, mixer.init_state(3, dtype=torch.float64))
    assert_close(y1, y0, TOL, "init_state vs None")
    same_state(s1, s0)


def test_state_is_returned_not_mutated(mixer):
    x = torch.randn(2, 5, D_MODEL, dtype=torch.float64)
    _, s = mixer(x)
    before, after = [], []
    map_tensors(lambda t: before.append(t.clone()), s)
    mixer(x, s)
    mixer.step(x[:, 0], s)
    map_tensors(after.append, s)
    assert len(after) == len(before) > 0
    assert all(torch.equal(a, b) for a, b in zip(after, before)), "a mixer mutated its input state"


def test_detached_state_cuts_graph(mixer):
    x = torch.randn(2, 5, D_MODEL, dtype=torch.float64, requires_grad=True)
    _, s = mixer(x)
    s = detach_state(s)
    map_tensors(lambda t: (t.requires_grad is False) or pytest.fail("state still requires grad"), s)
    y, _ = mixer(torch.randn(2, 4, D_MODEL, dtype=torch.float64), s)
    y.sum().backward()
    assert x.grad is None


def test_gradients_flow_through_carried_state(mixer):
    x1 = torch.randn(1, 6, D_MODEL, dtype=torch.float64, requires_grad=True)
    _, s = mixer(x1)
    y, _ = mixer(torch.randn(1, 3, D_MODEL, dtype=torch.float64), s)
    (g,) = torch.autograd.grad(y.sum(), x1)
    assert g.abs().sum() > 0


def test_float32_forward_and_backward(mixer):
    mixer = mixer.float()
    x = torch.randn(2, 9, D_MODEL, requires_grad=True)
    y, _ = mixer(x)
    assert y.dtype == torch.float32 and y.shape == x.shape
    y.sum().backward()
    assert torch.isfinite(x.grad).all()


def test_bad_inputs(mixer):
    x = torch.randn(2, 5, D_MODEL, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"\(\*, \*, 8\)"):
        mixer(x[0])
    with pytest.raises(ValueError, match=r"\(\*, \*, 8\)"):
        mixer(torch.randn(2, 5, D_MODEL + 1, dtype=torch.float64))
    with pytest.raises(ValueError, match="seq_len 0"):
        mixer(x[:, :0])
    with pytest.raises(TypeError, match="floating-point"):
        mixer(torch.ones(2, 5, D_MODEL, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\(\*, 8\)"):
        mixer.step(x, mixer.init_state(2, dtype=torch.float64))
    _, s = mixer(x)
    with pytest.raises(ValueError, match="batch 2, input has batch 3"):
        mixer(torch.randn(3, 5, D_MODEL, dtype=torch.float64), s)
    wrong = S4DState(torch.zeros(2)) if not isinstance(s, S4DState) else KVCache(torch.zeros(2), torch.zeros(2), 0)
    with pytest.raises(TypeError, match="state"):
        mixer(x, wrong)


def test_attention_window_limits_cache_and_view():
    attn = make("attention-window")
    x = torch.randn(1, 12, D_MODEL, dtype=torch.float64)
    _, cache = attn(x)
    assert cache.k.shape[2] == 4 and cache.pos == 12
    # With a window of 5, the output at t only depends on x[t-4 .. t].
    x2 = x.clone()
    x2[:, :7] = torch.randn(1, 7, D_MODEL, dtype=torch.float64)
    y1, _ = attn(x)
    y2, _ = attn(x2)
    assert_close(y2[:, 11], y1[:, 11], TOL, "window")
    assert (y2[:, 10] - y1[:, 10]).abs().max() > 1e-6


def test_h3_state_layout():
    h3 = make("h3-heads-chunked")
    s = h3.init_state(3, dtype=torch.float64)
    assert isinstance(s, H3State)
    assert s.shift.shape == (3, D_MODEL, 6) and s.ssm.shape == (3, 2, 2, 4, 4) and s.ssm.dtype == torch.complex128


def test_s4d_output_options():
    assert S4D(D_MODEL, d_state=8, postact="linear").out_proj.out_features == D_MODEL
    assert S4D(D_MODEL, d_state=8).out_proj.out_features == 2 * D_MODEL
    with pytest.raises(ValueError, match="postact"):
        S4D(D_MODEL, d_state=8, postact="relu")


def test_attention_dropout_only_in_training():
    attn = Attention(D_MODEL, n_heads=2, dropout=0.5).double()
    x = torch.randn(2, 9, D_MODEL, dtype=torch.float64)
    plain = Attention(D_MODEL, n_heads=2).double()
    plain.load_state_dict(attn.state_dict())
    attn.eval()
    assert torch.equal(attn(x)[0], plain(x)[0])  # evaluation: no dropout, same function
    attn.train()
    assert not torch.allclose(attn(x)[0], plain(x)[0])
    with pytest.raises(ValueError, match="dropout"):
        Attention(D_MODEL, n_heads=2, dropout=1.0)


def test_a_dtype_other_than_the_parameters_is_our_error_outside_autocast():
    mixer = make("h3").float()
    with pytest.raises(TypeError, match="x has dtype torch.bfloat16, the layer's parameters torch.float32"):
        mixer(torch.randn(2, 5, D_MODEL, dtype=torch.bfloat16))
    with pytest.raises(ValueError, match="batch 0"):
        mixer(torch.randn(0, 5, D_MODEL))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixer(torch.randn(2, 5, D_MODEL, dtype=torch.bfloat16))  # autocast casts for the projections
