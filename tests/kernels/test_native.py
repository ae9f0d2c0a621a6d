"""The native backend's C++ selective scan beyond the reference equalities of test_selective_scan:
any input strides, bit-identical reruns, thread counts, refusals, and how it is built and cached."""

import os

import pytest
import torch

from longssm.kernels import native
from longssm.kernels.native_scan import selective_scan_native
from conftest import assert_close


def _inputs(batch=2, D=40, N=8, L=75, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g, dtype=dtype)
    return dict(u=r(batch, D, L), delta=r(batch, D, L), A=-torch.rand(D, N, generator=g, dtype=dtype) * 3,
                B=r(batch, N, L), C=r(batch, N, L))


def _run(args, x0=None, softplus=True):
    args = {k: v.detach().requires_grad_() for k, v in args.items()}
    y, x = selective_scan_native(**args, delta_softplus=softplus, initial_state=x0, return_state=True)
    w = torch.linspace(-1, 1, y.numel()).view_as(y)
    grads = torch.autograd.grad((y * w).sum() + x.square().sum(), list(args.values()))
    return (y, x, *grads)


def test_time_major_views_equal_contiguous_inputs():
    """Mamba's projections give (batch, L, D) tensors; the kernel reads their transposed views in
    place (strides are arguments), with results bit-identical to contiguous copies (softplus off:
    PyTorch's own softplus rounds differently on strided inputs)."""
    args = _inputs()
    args["delta"] = args["delta"].abs() * 0.5  # a time step as softplus would give
    views = {k: (v.transpose(1, 2).contiguous().transpose(1, 2) if v.dim() == 3 else v) for k, v in args.items()}
    assert views["u"].stride() != args["u"].stride()
    for a, b in zip(_run(args, softplus=False), _run(views, softplus=False)):
        assert torch.equal(a, b)


def test_reruns_are_bit_identical_and_thread_counts_agree():
    args = _inputs(batch=3)
    first, second = _run(args), _run(args)
    assert all(torch.equal(a, b) for a, b in zip(first, second))
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        single = _run(args)
    finally:
        torch.set_num_threads(threads)
    for a, b in zip(first, single):  # another split of the channel sums: float32 rounding only
        assert_close(a, b, 1e-5, "1 thread vs several")


def test_refusals_name_what_was_expected():
    args = _inputs(dtype=torch.float64)
    with pytest.raises(TypeError, match="float32 or float64, got torch.float16"):
        selective_scan_native(**{k: v.half() for k, v in args.items()})
    with pytest.raises(TypeError, match="in one dtype"):
        selective_scan_native(**{**args, "B": args["B"].float()})
    with pytest.raises(ValueError, match=r"B must have shape \(2, 8, 75\)"):
        selective_scan_native(**{**args, "B": args["B"][..., :-1]})


def test_missing_compiler_is_one_clear_error(monkeypatch):
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setenv("PATH", "")
    with pytest.raises(native.NativeBuildError, match="needs a C\\+\\+ compiler.*backend 'auto'"):
        native.compiler()


def test_build_is_cached_and_a_failed_build_says_why(monkeypatch, tmp_path):
    monkeypatch.setenv("LONGSSM_CACHE", str(tmp_path))
    build = native.library.__wrapped__  # past the per-process cache
    lib = build("selective_scan")
    (so,) = (tmp_path / "native").glob("selective_scan-*.so")
    assert lib.longssm_scan_fwd_f32 is not None
    stamp = so.stat().st_mtime_ns
    build("selective_scan")
    assert so.stat().st_mtime_ns == stamp  # loaded, not rebuilt
    fake = tmp_path / "fake-cxx"
    fake.write_text("#!/bin/sh\necho 'fake 1.0'\n[ \"$1\" = --version ] && exit 0\necho 'error: no' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("CXX", str(fake))
    with pytest.raises(native.NativeBuildError, match="(?s)building selective_scan.cpp failed.*error: no"):
        build("selective_scan")
    assert sorted(p.name for p in (tmp_path / "native").iterdir()) == [so.name]  # no half-written file left
    assert os.access(so, os.R_OK)
