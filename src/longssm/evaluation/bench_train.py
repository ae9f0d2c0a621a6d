"""Training throughput side by side: forward + backward tokens/s of one training step, ours and the
peers a user would otherwise pick, at the same model configuration.

Two groups share a configuration (width ``d_model``, ``n_layer`` blocks, a ``vocab``-token head):
Mamba blocks (ours with the default and the ``native`` kernel backend, ``transformers``' ``MambaForCausalLM`` on its PyTorch path, ``mambapy`` with its
parallel scan), and the attention-or-H3 group (our H3, our H3-attention hybrid with attention in
the second block, our Transformer, ``transformers``' ``GPT2LMHeadModel``). Every point (contender,
length) runs in a fresh process, one after another: two warm-up steps, then ``repeats`` timed steps
(median), and that process's peak memory (VmHWM). A point that does not finish within
``timeout_s`` is reported as such (``transformers``' Mamba path loops over the sequence in Python
and can take many minutes per step), and the contender skips longer lengths.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

MAMBA_GROUP = ("mamba", "mamba-native", "hf-mamba", "mambapy")
ATTENTION_GROUP = ("h3", "hybrid", "transformer", "hf-gpt2")


@dataclass(frozen=True)
class TrainBenchConfig:
    lengths: tuple[int, ...] = (1024, 4096)  # 16K: see BENCHMARKS.md (the peers take minutes per step)
    tokens_per_step: int = 4096  # batch = max(1, tokens_per_step // L)
    d_model: int = 768
    n_layer: int = 4
    vocab: int = 8192
    repeats: int = 2
    timeout_s: float = 300.0

    @classmethod
    def quick(cls) -> "TrainBenchConfig":
        return cls(lengths=(64,), tokens_per_step=128, d_model=64, n_layer=1, vocab=256, repeats=1, timeout_s=120.0)


def build(name: str, cfg: TrainBenchConfig) -> Callable[[torch.Tensor], torch.Tensor]:
    """A function ids (batch, L) -> logits of contender ``name`` at ``cfg``'s size (random init)."""
    d, n, v = cfg.d_model, cfg.n_layer, cfg.vocab
    if name in ("mamba", "mamba-native", "h3", "hybrid", "transformer"):
        from longssm.models import LanguageModel, model_config

        arch = {"mamba": "mamba", "mamba-native": "mamba", "h3": "h3", "hybrid": "h3", "transformer": "attention"}[name]
        model = LanguageModel(model_config(arch, vocab_size=v, d_model=d, n_layer=n, attention={"n_heads": max(1, d // 64)},
                                           attention_at=(1,) if name == "hybrid" else (),
                                           backend="native" if name == "mamba-native" else "auto"))
        return lambda ids: model(ids, return_state=False)[0]
    if name == "hf-mamba":
        from transformers import MambaConfig, MambaForCausalLM

        model = MambaForCausalLM(MambaConfig(vocab_size=v, hidden_size=d, num_hidden_layers=n, state_size=16))
        return lambda ids: model(ids, use_cache=False).logits
    if name == "hf-gpt2":
        from transformers import GPT2Config, GPT2LMHeadModel

        model = GPT2LMHeadModel(GPT2Config(vocab_size=v, n_positions=max(cfg.lengths), n_embd=d, n_layer=n,
                                           n_head=max(1, d // 64), bos_token_id=v - 1, eos_token_id=v - 1))
        return lambda ids: model(ids, use_cache=False).logits
    if name == "mambapy":
        from longssm.evaluation.bench_generate import mambapy_lm

        model = mambapy_lm(d, n, v)
        return lambda ids: model(ids)
    raise ValueError(f"unknown contender {name!r}")


def train_step(fn, ids: torch.Tensor) -> None:
    logits = fn(ids[:, :-1])
    loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1).float(), ids[:, 1:].flatten())
    loss.backward()


def _ids(cfg: TrainBenchConfig, L: int) -> torch.Tensor:
    return torch.randint(0, cfg.vocab, (max(1, cfg.tokens_per_step // L), L + 1), generator=torch.Generator().manual_seed(0))


def _attention_flops(q, k, v, dropout_p=0.0, is_causal=False, *_, out_shape=None, **__) -> int:
    """Q K^T and P V of attention over (batch, heads, L, head dim) shapes, for the (query, key)
    pairs it needs: with ``is_causal`` only keys at or before the query (PyTorch's own formulas for
    its GPU kernels count every pair)."""
    Lq, Lk = q[2], k[2]
    pairs = Lq * Lk
    if is_causal:  # query i sees keys 0..i (top-left aligned, as PyTorch's is_causal)
        pairs = Lq * (Lq + 1) // 2 if Lq <= Lk else Lk * (Lk + 1) // 2 + (Lq - Lk) * Lk
    return 2 * q[0] * q[1] * pairs * (q[3] + v[3])


def _attention_backward_flops(grad_out, q, k, v, out, logsumexp, dropout_p=0.0, is_causal=False, *_,
                              out_shape=None, **__) -> int:
    """dV, dP, dQ and dK: twice the forward's products (a recomputation of P is not counted)."""
    return 2 * _attention_flops(q, k, v, dropout_p, is_causal)


def matmul_flops(fn, ids: torch.Tensor) -> int:
    """The matrix-product FLOPs of one training step (forward and backward: mm, addmm, bmm and
    attention's fused products), counted by PyTorch's FlopCounterMode while the step runs. FFTs,
    scans, convolutions and elementwise work are left out: this is the work a step cannot avoid."""
    from torch.utils.flop_counter import FlopCounterMode

    aten = torch.ops.aten
    with FlopCounterMode(display=False, custom_mapping={  # CPU attention, which PyTorch does not count
            aten._scaled_dot_product_flash_attention_for_cpu: _attention_flops,
            aten._scaled_dot_product_flash_attention_for_cpu_backward: _attention_backward_flops}) as counter:
        train_step(fn, ids)
    return sum(n for op, n in counter.get_flop_counts()["Global"].items()
               if "mm" in str(op) or "scaled_dot_product" in str(op))


def matmul_rate(n: int = 2048, repeats: int = 5) -> float:
    """This machine's float32 matrix-product rate (FLOP/s) on torch's threads: the median of
    ``repeats`` products of two n x n matrices."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t0)
    return 2 * n**3 / sorted(times)[len(times) // 2]


def measure(name: str, cfg: TrainBenchConfig, L: int) -> dict:
    """In this process: build contender ``name``, two warm-up steps (the first steps allocate the
    buffers a step reuses; the first also counts the step's matrix-product FLOPs), then
    ``repeats`` timed steps."""
    fn, ids = build(name, cfg), _ids(cfg, L)
    flops = matmul_flops(fn, ids)
    train_step(fn, ids)
    times = []
    for _ in range(cfg.repeats):
        t0 = time.perf_counter()
        train_step(fn, ids)
        times.append(time.perf_counter() - t0)
    with open("/proc/self/status") as f:
        peak = next(int(line.split()[1]) / 1024 for line in f if line.startswith("VmHWM:"))
    return {"step_s": sorted(times)[len(times) // 2], "batch": ids.shape[0], "peak_mb": peak, "matmul_flops": flops}


def measure_in_subprocess(name: str, cfg: TrainBenchConfig, L: int) -> dict | None:
    """:func:`measure` in a fresh process (its own peak memory, the same torch threads); None
    when it does not finish within ``cfg.timeout_s``."""
    code = ("import json, sys; from longssm.evaluation.bench_train import TrainBenchConfig, measure; "
            "cfg = TrainBenchConfig(**json.loads(sys.argv[1])); "
            "print('RESULT', json.dumps(measure(sys.argv[2], cfg, int(sys.argv[3]))))")
    args = json.dumps({**cfg.__dict__, "lengths": list(cfg.lengths)})
    try:
        r = subprocess.run([sys.executable, "-c", code, args, name, str(L)], capture_output=True, text=True,
                           timeout=cfg.timeout_s, env={**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())})
    except subprocess.TimeoutExpired:
        return None
    lines = [line for line in r.stdout.splitlines() if line.startswith("RESULT ")]
    if r.returncode or not lines:
        raise RuntimeError(f"bench train: {name} at L={L} failed: {r.stderr.strip().splitlines()[-1:]}")
    return json.loads(lines[-1][len("RESULT "):])


def run(cfg: TrainBenchConfig, out: Path | None, contenders=MAMBA_GROUP + ATTENTION_GROUP, progress=print) -> dict:
    unknown = sorted(set(contenders) - set(MAMBA_GROUP + ATTENTION_GROUP))
    if unknown:
        raise ValueError(f"unknown contender(s) {unknown}; expected some of {', '.join(MAMBA_GROUP + ATTENTION_GROUP)}")
    threads = torch.get_num_threads()
    rate = matmul_rate()
    progress(f"float32 matrix products on {threads} threads: {rate / 1e9:,.0f} GFLOP/s (the floors' rate)")
    result = {"machine": {"torch": torch.__version__, "threads": threads, "cpu": platform.processor(),
                          "matmul_gflops": round(rate / 1e9, 1)},
              "config": {**cfg.__dict__, "lengths": list(cfg.lengths)}, "records": [], "skipped": {}}
    for name in (c for c in MAMBA_GROUP + ATTENTION_GROUP if c in contenders):
        try:
            build(name, TrainBenchConfig.quick())  # a missing peer is named before any timing
        except ImportError as e:
            result["skipped"][name] = f"not installed ({e.name}): pip install 'longssm[bench]'"
            progress(f"{name}: skipped, {result['skipped'][name]}")
            continue
        for L in cfg.lengths:
            m = measure_in_subprocess(name, cfg, L)
            if m is None:
                result["skipped"][f"{name} at L >= {L}"] = f"2 warm-up and {cfg.repeats} timed steps took over {cfg.timeout_s:.0f} s"
                progress(f"L={L:>6} {name:<12} over {cfg.timeout_s:.0f} s: longer lengths skipped")
                break
            rec = {"contender": name, "L": L, "batch": m["batch"], "tokens_per_s": m["batch"] * L / m["step_s"],
                   "step_s": m["step_s"], "peak_mb": m["peak_mb"], "matmul_gflop": round(m["matmul_flops"] / 1e9, 2),
                   "x_matmul_floor": m["step_s"] / (m["matmul_flops"] / rate)}
            result["records"].append(rec)
            progress(f"L={L:>6} {name:<12} {rec['tokens_per_s']:10,.0f} tokens/s  ({m['step_s']:.2f} s/step, "
                     f"{rec['x_matmul_floor']:.1f}x its matmul floor, peak {m['peak_mb']:,.0f} MB)")
            if out is not None:
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_text(json.dumps(result, indent=1) + "\n")
    return result


#: (ours, peer) pairs whose ratio the report gives: the targets of the comparison.
RATIOS = (("mamba", "hf-mamba"), ("mamba", "mambapy"), ("mamba-native", "mambapy"), ("mamba-native", "mamba"), ("h3", "transformer"), ("hybrid", "transformer"),
          ("h3", "hf-gpt2"), ("transformer", "hf-gpt2"))


def markdown(result: dict) -> str:
    """Tokens/s and peak memory per contender and length, then ours / peer ratios."""
    recs = {(r["contender"], r["L"]): r for r in result["records"]}
    lengths = sorted({r["L"] for r in result["records"]})
    names = list(dict.fromkeys(r["contender"] for r in result["records"]))
    cell = lambda r: "—" if r is None else f"{r['tokens_per_s']:,.0f} ({r['peak_mb']:,.0f} MB)"
    lines = ["Forward + backward tokens/s (peak MB of the measuring process):", "",
             "| contender | " + " | ".join(f"L = {L:,} (batch {recs[next(n for n in names if (n, L) in recs), L]['batch']})"
                                         for L in lengths) + " |", "|---|" + "---:|" * len(lengths)]
    lines += [f"| {n} | " + " | ".join(cell(recs.get((n, L))) for L in lengths) + " |" for n in names]
    if all("x_matmul_floor" in r for r in result["records"]):
        rate = result["machine"]["matmul_gflops"]
        lines += ["", f"Step time over its matrix-product floor (the step's mm/bmm/attention FLOPs at this machine's "
                      f"{rate:,.0f} GFLOP/s float32 matrix-product rate, measured in the same run):", "",
                  "| contender | " + " | ".join(f"L = {L:,}" for L in lengths) + " |", "|---|" + "---:|" * len(lengths)]
        floor = lambda r: "—" if r is None else f"{r['x_matmul_floor']:.2f}x ({r['matmul_gflop']:,.0f} GFLOP)"
        lines += [f"| {n} | " + " | ".join(floor(recs.get((n, L))) for L in lengths) + " |" for n in names]
    lines += ["", "Ratios (ours / peer, tokens/s):", "", "| pair | " + " | ".join(f"L = {L:,}" for L in lengths) + " |",
              "|---|" + "---:|" * len(lengths)]
    for a, b in RATIOS:
        vals = [(recs.get((a, L)), recs.get((b, L))) for L in lengths]
        if any(x and y for x, y in vals):
            lines.append(f"| {a} / {b} | " + " | ".join(
                f"{x['tokens_per_s'] / y['tokens_per_s']:.2f}x" if x and y else "—" for x, y in vals) + " |")
    if result.get("skipped"):
        lines += ["", "Not measured: " + "; ".join(f"{k}: {v}" for k, v in result["skipped"].items()) + "."]
    return "\n".join(lines) + "\n"
