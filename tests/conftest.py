"""Shared test helpers: tolerance checks, small models, a small corpus.

Tests import the plain helpers with ``from conftest import ...``; ``slow`` marks integration tests
(subprocesses, whole CLI runs) that ``make test`` still runs (``pytest -m "not slow"`` skips them).
"""

import pytest
import torch

from longssm.models import LanguageModel, ModelConfig


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def assert_close(actual, expected, tol, what=""):
    """Max absolute error, scaled by max(1, |expected|_inf): the tolerance is stated per test."""
    assert actual.shape == expected.shape, f"{what}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    if expected.numel() == 0:
        return
    scale = max(1.0, expected.abs().max().item())
    err = (actual - expected).abs().max().item() / scale
    assert err <= tol, f"{what}: scaled max error {err:.3e} > {tol:.0e}"


SMALL_OPTS = {"h3": {"d_state": 8, "shift_state": 4}, "attention": {"n_heads": 2},
              "s4d": {"d_state": 8}, "mamba": {"d_state": 4}, "shift": {"d_state": 4}}
KINDS = {
    "h3": ("h3", "h3"), "attention": ("attention", "attention"), "s4d": ("s4d", "s4d"),
    "mamba": ("mamba", "mamba"), "hybrid": ("h3", "attention", "mamba"),
}


def small_model(kind, **kw):
    """A seeded 2-3 layer model of width 16 over 11 tokens: KINDS[kind] mixers."""
    torch.manual_seed(0)
    mixers = KINDS[kind]
    cfg = ModelConfig(vocab_size=11, d_model=16, n_layer=len(mixers), mixers=mixers,
                      mixer_options={m: SMALL_OPTS[m] for m in set(mixers)}, **kw)
    return LanguageModel(cfg)


TEXT = "".join(f"Document line {i}: the quick brown fox jumps over the lazy dog {i * 7 % 13}.\n" for i in range(400))


def corpus(tmp_path):
    """Four training documents and a validation file under tmp_path/corpus."""
    d = tmp_path / "corpus"
    d.mkdir(exist_ok=True)
    for k in range(4):
        (d / f"doc{k}.txt").write_text(TEXT[k * 5000:(k + 1) * 5000 + 3000])
    (d / "valid.txt").write_text(TEXT[-4000:])
    return d
