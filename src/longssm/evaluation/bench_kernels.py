"""Kernel benchmarks: ours against the real alternatives, side by side in one process.

Each case times both contenders in the same run (warm-ups, then the median of repeats) and
reports the ratio, plus the floor the work needs on this machine: FLOPs over a measured matmul
rate and bytes over a measured copy bandwidth. Memory is measured in fresh subprocesses (peak RSS).
"""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from longssm.kernels import discretize, fftconv, get_op, s4d_init_A, selective_scan_ref, ssm_kernel
from longssm.layers import H3, Attention


@dataclass(frozen=True)
class BenchConfig:
    """Sizes and repetitions; ``quick()`` shrinks everything to a seconds-long smoke run."""

    d_model: int = 768  # channels for the S4D kernel, fftconv and layer cases
    kernel_len: int = 4096  # S4D kernel generation length
    fft_len: int = 16384  # fftconv length
    layer_lens: tuple[int, ...] = (1024, 4096, 16384)  # H3 vs attention lengths
    scan_d_inner: int = 512
    scan_d_state: int = 16
    scan_len: int = 4096
    step_d_inner: int = 1536  # decoding step case: mamba-130m's d_inner, batch 1
    linear_layers: int = 24  # native linear case: mamba-130m's projections per layer, this many layers
    linear_rows: tuple[int, ...] = (1, 8, 32, 128, 512)  # ... and rows (tokens) per call
    memory_len: int = 1_048_576  # state-passing memory case
    memory_channels: int = 256
    warmup: int = 3
    repeats: int = 5

    @classmethod
    def quick(cls) -> "BenchConfig":
        return cls(d_model=64, kernel_len=256, fft_len=512, layer_lens=(256,), scan_d_inner=32,
                   scan_len=256, step_d_inner=32, linear_layers=1, linear_rows=(1, 8), memory_len=16384,
                   memory_channels=16, warmup=1, repeats=3)


def median_times(*fns, warmup: int, repeats: int) -> list[float]:
    """Median seconds of each function; runs are interleaved (a, b, a, b, ...) so that drifting
    machine load hits every contender alike."""
    for _ in range(warmup):
        for fn in fns:
            fn()
    times = [[] for _ in fns]
    for _ in range(repeats):
        for fn, ts in zip(fns, times):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
    return [sorted(ts)[len(ts) // 2] for ts in times]


def roofline(cfg: BenchConfig) -> dict:
    """This machine's practical peaks: fp32 matmul FLOP/s and large-copy bytes/s."""
    n = 2048 if cfg.d_model >= 512 else 256
    a, b = torch.randn(n, n), torch.randn(n, n)
    (t_mm,) = median_times(lambda: a @ b, warmup=cfg.warmup, repeats=cfg.repeats)
    src = torch.randn(64 * 1024 * 1024 if cfg.d_model >= 512 else 1024 * 1024)
    dst = torch.empty_like(src)
    (t_cp,) = median_times(lambda: dst.copy_(src), warmup=cfg.warmup, repeats=cfg.repeats)
    return {"matmul_flops": 2 * n**3 / t_mm, "copy_bytes_per_s": 2 * src.nbytes / t_cp}


def _record(name, ours, base, target, peak, flops=0.0, nbytes=0.0, **extra):
    floor = max(flops / peak["matmul_flops"], nbytes / peak["copy_bytes_per_s"])
    return {"case": name, "ours_s": ours, "baseline_s": base, "ratio": base / ours,
            "target_ratio": target, "floor_s": floor, "x_floor": ours / floor if floor else None, **extra}


def _fwd_bwd(fn, *inputs):
    def run():
        out = fn()
        out = out[0] if isinstance(out, tuple) else out
        out.sum().backward()
        for t in inputs:
            t.grad = None
    return run


def bench_s4d_kernel(cfg, peak):
    H, N, L = cfg.d_model, 32, cfg.kernel_len  # d_state 64 = 32 complex modes
    A = s4d_init_A(H, N).to(torch.complex64)
    dt = torch.exp(torch.linspace(math.log(1e-3), math.log(1e-1), H))
    dA, dB = discretize(A, torch.ones_like(A), dt, "zoh")
    C = torch.randn(H, N, dtype=torch.complex64)
    dtA = dt[:, None] * A

    def naive():  # s4d.py: the full (H, N, L) Vandermonde of exponentials
        return 2 * torch.einsum("hn,hnl->hl", C * (torch.exp(dtA) - 1) / A,
                                torch.exp(dtA[..., None] * torch.arange(L))).real

    ours, base = median_times(lambda: ssm_kernel(dA, dB, 2 * C, L), naive,
                              warmup=cfg.warmup, repeats=cfg.repeats)
    return _record(f"S4D kernel generation, H={H}, N={N}, L={L}", ours, base, 20, peak,
                   flops=8.0 * H * N * L, nbytes=4.0 * H * L)


def bench_fftconv(cfg, peak):
    H, L = cfg.d_model, cfg.fft_len
    u, k = torch.randn(1, H, L), torch.randn(H, L)
    n = 2 * L

    def naive():
        return torch.fft.irfft(torch.fft.rfft(u, n=n) * torch.fft.rfft(k, n=n), n=n)[..., :L]

    ours, base = median_times(lambda: fftconv(u, k), naive, warmup=cfg.warmup, repeats=cfg.repeats)
    flops = H * (3 * 2.5 * n * math.log2(n) + 3 * n)  # three real FFTs + the complex product
    return _record(f"fftconv vs one-shot 2L FFT, H={H}, L={L}", ours, base, 2, peak,
                   flops=flops, nbytes=4.0 * 3 * H * L)


def bench_h3_vs_attention(cfg, peak, L):
    d = cfg.d_model
    n_heads = max(1, d // 64)
    torch.manual_seed(0)
    h3, attn = H3(d), Attention(d, n_heads=n_heads)
    projs = nn.ModuleList(nn.Linear(d, d) for _ in range(4))
    x = torch.randn(1, L, d, requires_grad=True)
    t_h3, t_attn, t_proj = median_times(
        _fwd_bwd(lambda: h3(x), x), _fwd_bwd(lambda: attn(x), x),
        _fwd_bwd(lambda: sum(p(x) for p in projs), x), warmup=cfg.warmup, repeats=cfg.repeats)
    flops_proj = 3 * 4 * 2 * L * d * d  # forward + 2x backward of four d x d projections
    return _record(f"H3 vs attention ({n_heads} heads), fwd+bwd, d={d}, L={L}", t_h3, t_attn,
                   3 if L >= 16384 else None, peak, flops=flops_proj,
                   projections_s=t_proj, h3_share_outside_projections=1 - t_proj / t_h3,
                   attention_share_outside_projections=1 - t_proj / t_attn)


def bench_selective_scan(cfg, peak, backend="auto"):
    """The fast selective scan of ``backend`` (``auto``: cache-blocked eager; ``compile``:
    torch.compile'd blocks, compiled in the warm-up rounds; ``native``: the C++ kernel) against the
    reference loop."""
    Dm, N, L = cfg.scan_d_inner, cfg.scan_d_state, cfg.scan_len
    torch.manual_seed(0)
    u, delta = torch.randn(1, Dm, L, requires_grad=True), torch.randn(1, Dm, L, requires_grad=True)
    A = (-torch.rand(Dm, N) * 4).requires_grad_()
    B, C = torch.randn(1, N, L, requires_grad=True), torch.randn(1, N, L, requires_grad=True)
    inputs = (u, delta, A, B, C)
    kw = dict(delta_softplus=True)
    fast = get_op("selective_scan", backend)

    def forward_only():
        with torch.no_grad():
            fast(*inputs, **kw)

    ours, base, fwd = median_times(_fwd_bwd(lambda: fast(*inputs, **kw), *inputs),
                                   _fwd_bwd(lambda: selective_scan_ref(*inputs, **kw), *inputs), forward_only,
                                   warmup=cfg.warmup, repeats=cfg.repeats)
    # A fused kernel reads/writes only the (batch, D, L) and (batch, N, L) tensors and does ~20
    # flops per (d, n, t) forward+backward; ours materialises (batch, L, D, N) tensors instead.
    name = "selective_scan" if backend == "auto" else f"selective_scan ({backend} backend)"
    return _record(f"{name} vs ref, fwd+bwd, D={Dm}, N={N}, L={L}", ours, base, 5, peak,
                   flops=20.0 * Dm * N * L, nbytes=4.0 * (8 * Dm * L + 6 * N * L), forward_s=fwd)


def bench_scan_step(cfg, peak, calls: int = 200):
    """One decoding step of the selective SSM (softplus, state update, readout, skip, gate; batch 1)
    as the native backend's single C++ call against the PyTorch step (about twenty small ops); per
    call, timed over ``calls`` calls. A 24-layer model makes 24 per token."""
    from longssm.kernels.selective_scan import selective_scan_step

    Dm, N = cfg.step_d_inner, cfg.scan_d_state
    torch.manual_seed(0)
    u, dt, z, bias, D = (torch.randn(1, Dm), torch.randn(1, Dm), torch.randn(1, Dm), torch.randn(Dm),
                         torch.randn(Dm))
    A, B, C, state = -torch.rand(Dm, N) * 4, torch.randn(1, N), torch.randn(1, N), torch.randn(1, Dm, N)
    args, kw = (u, dt, A, B, C, state, D, z, bias), dict(delta_softplus=True)
    native = get_op("selective_scan_step", "native")

    def repeat(fn):
        def run():
            for _ in range(calls):
                fn(*args, **kw)
        return run

    with torch.no_grad():
        ours, base = median_times(repeat(native), repeat(selective_scan_step), warmup=cfg.warmup,
                                  repeats=cfg.repeats)
    return _record(f"selective scan decoding step, native vs PyTorch, batch 1, D={Dm}, N={N}", ours / calls,
                   base / calls, None, peak, nbytes=4.0 * (2 * Dm * N + 6 * Dm + 3 * N))


def bench_linear_rows(cfg, peak):
    """The native backend's linear kernel against ``F.linear`` over the projections of a model
    (``linear_layers`` layers of mamba-130m's four, 354 MB at 24), so the weights stream from
    memory as in decoding, at each of ``linear_rows`` rows per call. The record's times are at 8
    rows (batch-8 decoding); ``ratio_by_rows`` holds every row count (where ``MAX_ROWS`` is set)."""
    import torch.nn.functional as F

    from longssm.kernels.native_linear import linear_native

    torch.manual_seed(0)
    shapes = [(3072, 768), (80, 1536), (1536, 48), (768, 1536)]  # in_proj, x_proj, dt_proj, out_proj
    weights = [torch.randn(o, i) for _ in range(cfg.linear_layers) for o, i in shapes]
    by_rows, at = {}, {}
    with torch.no_grad():
        for rows in cfg.linear_rows:
            xs = {i: torch.randn(rows, i) for _, i in shapes}
            ours, base = median_times(lambda: [linear_native(xs[w.shape[1]], w) for w in weights],
                                      lambda: [F.linear(xs[w.shape[1]], w) for w in weights],
                                      warmup=cfg.warmup, repeats=cfg.repeats)
            by_rows[rows], at[rows] = base / ours, (ours, base)
    rows = 8 if 8 in at else cfg.linear_rows[0]
    nbytes = 4.0 * sum(w.numel() for w in weights)
    return _record(f"linear (native backend) vs F.linear, {cfg.linear_layers} layers' projections, {rows} rows",
                   *at[rows], None, peak, flops=2.0 * rows * nbytes / 4, nbytes=nbytes,
                   ratio_by_rows={str(r): round(v, 3) for r, v in by_rows.items()})


def bench_block_step(cfg, peak, kind: str):
    """A block's decoding step with the native backend (``kind``: ``mamba``, a Mamba block, or
    ``h3``, an H3 layer): fused into one C++ call (the ``mamba_step`` / ``h3_step`` op) against
    the block composing its modules (the native matrix-vector kernel, ~20 small PyTorch ops), over
    ``linear_layers`` blocks of the 125M presets' size (d_model 768) so the weights stream from
    memory as in decoding, batch 1."""
    from longssm.kernels import backend
    from longssm.layers import H3, SelectiveSSM, configure

    torch.manual_seed(0)
    make, op = {"mamba": (SelectiveSSM, "mamba_step"), "h3": (H3, "h3_step")}[kind]
    blocks = [make(768) for _ in range(cfg.linear_layers)]
    for b in blocks:
        configure(b, backend="native")
    u, states = torch.randn(1, 768), [b.init_state(1) for b in blocks]
    fused = backend.OPS[op]["native"]

    def steps():
        for b, st in zip(blocks, states):
            b.step(u, st)

    def composed():  # the same blocks with the op table's fused entry taken out for the call
        backend.OPS[op]["native"] = None
        try:
            steps()
        finally:
            backend.OPS[op]["native"] = fused

    with torch.no_grad():
        ours, base = median_times(steps, composed, warmup=cfg.warmup, repeats=cfg.repeats)
    nbytes = 4.0 * sum(p.numel() for b in blocks for p in b.parameters())
    name = {"mamba": "Mamba block", "h3": "H3 layer"}[kind]
    return _record(f"{name} decoding step (native backend), fused vs composed, {cfg.linear_layers} blocks of "
                   f"d_model 768, batch 1", ours, base, None, peak, nbytes=nbytes)


_MEMORY_CHILD = r"""
import json, sys, time, torch
from longssm.kernels import discretize, s4d_init_A, ssm_conv, ssm_kernel

def status(key):  # bytes, from /proc/self/status
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(key))

mode, L, H = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
torch.manual_seed(0)
A = s4d_init_A(H, 32).to(torch.complex64)
dA, dB = discretize(A, torch.ones_like(A), torch.full((H,), 0.01), "zoh")
C = torch.randn(H, 32, dtype=torch.complex64)
u = torch.randn(1, H, L)
with torch.no_grad():
    base = status("VmRSS:")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak (VmHWM) to the current RSS
    t0 = time.perf_counter()
    if mode == "state_passing":
        y, _ = ssm_conv(u, dA, dB, C, return_state=True)
    else:  # the full-length kernel (blocked: the naive Vandermonde would need H*32*L complex) + one 2L FFT
        k = ssm_kernel(dA, dB, C, L)
        y = torch.fft.irfft(torch.fft.rfft(u, n=2 * L) * torch.fft.rfft(k, n=2 * L), n=2 * L)[..., :L]
    seconds = time.perf_counter() - t0
    extra = status("VmHWM:") - base - y.nbytes
print(json.dumps({"extra_bytes": extra, "input_bytes": u.nbytes, "seconds": seconds}))
"""


def bench_state_passing_memory(cfg, peak):
    L, H = cfg.memory_len, cfg.memory_channels

    def child(mode):
        out = subprocess.run([sys.executable, "-c", _MEMORY_CHILD, mode, str(L), str(H)],
                             check=True, capture_output=True, text=True)
        return json.loads(out.stdout)

    ours, naive = child("state_passing"), child("naive")
    rec = _record(f"state-passing diagonal SSM conv memory, H={H}, L={L}, no grad",
                  ours["seconds"], naive["seconds"], None, peak, nbytes=8.0 * H * L)
    rec.update(extra_over_input=ours["extra_bytes"] / ours["input_bytes"],
               naive_extra_over_input=naive["extra_bytes"] / naive["input_bytes"],
               target_extra_over_input=0.5)
    return rec


def case_names(cfg: BenchConfig) -> list[str]:
    return (["s4d-kernel", "fftconv"] + [f"h3-attention-{L}" for L in cfg.layer_lens]
            + ["scan", "scan-compile", "scan-native", "scan-step-native", "linear-native", "mamba-step-native",
               "h3-step-native", "state-passing"])


def run(cfg: BenchConfig, out: Path | None, progress=print, only: tuple[str, ...] = ()) -> list[dict]:
    """Run every case (or the named ones, see :func:`case_names`), print a table, and write the
    records (with machine info) as JSON."""
    unknown = sorted(set(only) - set(case_names(cfg)))
    if unknown:
        raise ValueError(f"unknown kernel case(s) {', '.join(unknown)}; known: {', '.join(case_names(cfg))}")
    peak = roofline(cfg)
    make = [lambda: bench_s4d_kernel(cfg, peak), lambda: bench_fftconv(cfg, peak)]
    make += [lambda L=L: bench_h3_vs_attention(cfg, peak, L) for L in cfg.layer_lens]
    make += [lambda: bench_selective_scan(cfg, peak), lambda: bench_selective_scan(cfg, peak, "compile"),
             lambda: bench_selective_scan(cfg, peak, "native"), lambda: bench_scan_step(cfg, peak),
             lambda: bench_linear_rows(cfg, peak), lambda: bench_block_step(cfg, peak, "mamba"),
             lambda: bench_block_step(cfg, peak, "h3"), lambda: bench_state_passing_memory(cfg, peak)]
    cases = [case for name, case in zip(case_names(cfg), make) if not only or name in only]
    records = []
    for i, case in enumerate(cases, 1):
        rec = case()
        records.append(rec)
        progress(f"[{i}/{len(cases)}] {format_record(rec)}")
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        meta = {"torch": torch.__version__, "threads": torch.get_num_threads(),
                "THP_MEM_ALLOC_ENABLE": os.environ.get("THP_MEM_ALLOC_ENABLE", "0"),
                "machine": platform.processor() or platform.machine(), "config": cfg.__dict__, **peak}
        out.write_text(json.dumps({"meta": meta, "records": records}, indent=2) + "\n")
    return records


def format_record(rec: dict) -> str:
    t = lambda s: f"{s * 1e3:.1f} ms" if s >= 1e-3 else f"{s * 1e6:.1f} us"  # noqa: E731
    line = f"{rec['case']}: ours {t(rec['ours_s'])}, baseline {t(rec['baseline_s'])}, ratio {rec['ratio']:.2f}x"
    if rec.get("target_ratio"):
        line += f" (target >= {rec['target_ratio']}x)"
    if rec.get("x_floor"):
        line += f", {rec['x_floor']:.1f}x the floor"
    if "h3_share_outside_projections" in rec:
        line += (f"; outside projections: H3 {rec['h3_share_outside_projections']:.0%}, "
                 f"attention {rec['attention_share_outside_projections']:.0%}")
    if "ratio_by_rows" in rec:
        line += "; by rows: " + ", ".join(f"{r}: {v:.2f}x" for r, v in rec["ratio_by_rows"].items())
    if "extra_over_input" in rec:
        line += (f"; extra memory / input: ours {rec['extra_over_input']:.3f}, "
                 f"naive {rec['naive_extra_over_input']:.2f} (target <= 0.5)")
    return line
