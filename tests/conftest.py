import pytest
import torch


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def assert_close(actual, expected, tol, what=""):
    """Max absolute error, scaled by max(1, |expected|_inf): the tolerance is stated per test."""
    scale = max(1.0, expected.abs().max().item())
    err = (actual - expected).abs().max().item() / scale
    assert err <= tol, f"{what}: scaled max error {err:.3e} > {tol:.0e}"
