"""Generation speed: per-token decode latency against context length, ours beside the peers a user
would otherwise pick, in one process (H3 paper section 5.3: recurrent decoding costs the same at
every context, attention's grows with its KV cache).

Contenders (random weights, fp32, the same torch threads): our ``hybrid-h3-125m``, ``h3-125m``,
``mamba-130m`` and ``transformer-125m`` (preallocated KV cache), each also with the ``native``
kernel backend (``+native``: the C++ matrix-vector kernel for every projection of a decoding step,
and the native scan); ``transformers``'
``GPT2LMHeadModel`` (124M, positions extended to the context, its default dynamic cache) and
``MambaForCausalLM`` (130M, its PyTorch path); ``mambapy``'s Mamba blocks (130M, see
:func:`mambapy_lm`). Peers are optional
(``pip install 'longssm[bench]'``): a missing one is reported as skipped.

Decode latency is per token at a given context: an attention cache is filled with random keys
and values of that length (a decoding step costs the same whatever the values: a real prefill of
32K tokens would take minutes per model on a CPU and measure nothing more), recurrent states
start at zero (their cost does not depend on the context). At each point every contender holds
its own state and they decode in turn (interleaved, so drifting machine load hits all alike):
``warmup`` tokens, then ``steps`` timed tokens, each chained from the previous state; the median is
reported (above INTERLEAVE_TOKENS cached tokens, one contender after another, for memory).
Prompt processing is tokens/s of one forward over a ``prompt_len`` prompt (interleaved
medians too).

The floor at batch 1 is the weight bytes over this machine's measured copy bandwidth (bytes read
plus bytes written per second): every weight must be read once per decoded token. A second floor
uses the streaming-read bandwidth (``read_bandwidth``: a sum over 256 MiB), the rate at which
weights can be read at all; with the native kernel, the matrix-vector products reach it. Both are
measured once, before the decoding; since this machine's bandwidth drifts, every point also times
a streaming read of the largest model's weight bytes in the same interleaved rounds, and reports
each latency against that (``x_interleaved_read_floor``).
"""

from __future__ import annotations

import gc
import json
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from longssm.evaluation.bench_kernels import median_times

OURS = ("hybrid-h3-125m", "h3-125m", "mamba-130m", "transformer-125m")
NATIVE = tuple(f"{p}+native" for p in OURS)  # the same models with the native kernel backend
PEERS = ("hf-gpt2", "hf-mamba", "mambapy")
VOCAB = 50280  # GPT-2's vocabulary padded as the Mamba checkpoints pad it; the same for every contender
ROOM = 64  # decode steps a synthetic KV cache has room for (more than warmup + steps)
# Above this many cached tokens (batch x context) the contenders' states are built and timed one
# contender at a time: at batch 8 and 16K tokens, two 12-layer KV caches of 2.4 GB each (plus the
# copy a concatenating cache makes every step) and seven models do not fit in 24 GB together.
INTERLEAVE_TOKENS = 64 * 1024
# Above this many, a 12-layer KV cache alone (19 GB at batch 8 x 32K in fp32) does not fit in this
# machine's 24 GB: such points are skipped and named in the results.
MAX_CACHED_TOKENS = 128 * 1024


@dataclass(frozen=True)
class GenerateBenchConfig:
    contexts: tuple[int, ...] = (256, 1024, 4096, 16384, 32768)
    batches: tuple[int, ...] = (1, 8)
    contenders: tuple[str, ...] = OURS + NATIVE + PEERS
    steps: int = 8  # timed decode steps per point (median)
    warmup: int = 2
    prompt_len: int = 4096
    prompt_repeats: int = 2
    tiny: bool = False  # the tiny-* presets and peers of their size (width 128, 4 layers, 256 tokens)

    @classmethod
    def quick(cls) -> "GenerateBenchConfig":
        """A smoke run of seconds at tiny sizes (what the tests run)."""
        return cls(contexts=(64, 256), batches=(1, 2), steps=2, warmup=1, prompt_len=64, prompt_repeats=1, tiny=True)


@dataclass(frozen=True)
class Size:
    """A peer's size: the 125M presets' (GPT-2 small, Mamba-130m) or the tiny presets'."""

    d_model: int
    n_layer: int
    vocab: int
    max_context: int

    @classmethod
    def of(cls, cfg: GenerateBenchConfig, mamba: bool = False) -> "Size":
        if cfg.tiny:
            return cls(128, 6 if mamba else 4, 256, max(cfg.contexts) + 1024)
        return cls(768, 24 if mamba else 12, VOCAB, max(cfg.contexts) + 1024)


class Contender:
    """A model with ``state(batch, context)``, ``step(tokens, state) -> state`` and ``prefill(ids)``."""

    def __init__(self, name: str, model: torch.nn.Module, state: Callable, step: Callable, prefill: Callable):
        self.name, self.model, self.state, self.step, self.prefill = name, model.eval(), state, step, prefill

    @property
    def weight_bytes(self) -> int:
        return sum(p.numel() * p.element_size() for p in {id(p): p for p in self.model.parameters()}.values())


def _ours(preset: str, cfg: GenerateBenchConfig, backend: str = "auto") -> Contender:
    from longssm.layers import configure
    from longssm.layers.attention import KVCache, _Buffer
    from longssm.models import LanguageModel, get_preset
    from longssm.models.state import ModelState

    if cfg.tiny:
        preset = {"hybrid-h3-125m": "tiny-hybrid", "h3-125m": "tiny-h3", "mamba-130m": "tiny-mamba",
                  "transformer-125m": "tiny-transformer"}[preset]
    model = LanguageModel(get_preset(preset, vocab_size=Size.of(cfg).vocab))
    configure(model, backend=backend)

    def state(batch: int, context: int):
        zero = model.init_state(batch)
        layers = []
        for s in zero.layers:
            if isinstance(s, KVCache):  # random keys and values, in a buffer with room to decode into
                shape = (batch, s.k.shape[1], context + ROOM, s.k.shape[3])
                buf = _Buffer(torch.randn(shape), torch.randn(shape), context)
                s = KVCache(buf.k[:, :, :context], buf.v[:, :, :context], context, buf)
            layers.append(s)
        return ModelState(tuple(layers), context)

    return Contender(preset + ("" if backend == "auto" else f"+{backend}"), model, state,
                     lambda tok, s: model.step(tok, s)[1],
                     lambda ids: model(ids))


def _hf_gpt2(cfg: GenerateBenchConfig) -> Contender:
    from transformers import DynamicCache, GPT2Config, GPT2LMHeadModel

    z = Size.of(cfg)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=z.vocab, n_positions=z.max_context, n_embd=z.d_model,
                                       n_layer=z.n_layer, n_head=z.d_model // 64, bos_token_id=z.vocab - 1,
                                       eos_token_id=z.vocab - 1))

    def state(batch: int, context: int):
        cache = DynamicCache()
        for i in range(model.config.n_layer):
            shape = (batch, z.d_model // 64, context, 64)
            cache.update(torch.randn(shape), torch.randn(shape), i)
        return cache

    def step(tok, cache):
        model(tok[:, None], cache=cache, use_cache=True)
        return cache

    return Contender("hf-gpt2", model, state, step, lambda ids: model(ids, use_cache=True))


def _hf_mamba(cfg: GenerateBenchConfig) -> Contender:
    from transformers import MambaConfig, MambaForCausalLM

    z = Size.of(cfg, mamba=True)
    model = MambaForCausalLM(MambaConfig(vocab_size=z.vocab, hidden_size=z.d_model, num_hidden_layers=z.n_layer,
                                         state_size=16))

    def state(batch: int, context: int):  # a short real prefill: the recurrent cache has one size at every context
        return model(torch.zeros(batch, 4, dtype=torch.long), use_cache=True).cache

    def step(tok, cache):
        return model(tok[:, None], cache=cache, use_cache=True).cache

    return Contender("hf-mamba", model, state, step, lambda ids: model(ids, use_cache=True))


def mambapy_lm(d_model: int, n_layer: int, vocab: int) -> torch.nn.Module:
    """mambapy's Mamba blocks as a language model: embedding, blocks, RMSNorm, tied head, as
    ``mambapy.lm.LM`` builds it (that module also imports Mamba-2, whose Triton kernels from
    ``mamba_ssm`` do not install without CUDA, so it cannot be imported on a CPU machine)."""
    from mambapy.mamba import Mamba, MambaConfig, RMSNorm

    class MambapyLM(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.config = MambaConfig(d_model=d_model, n_layers=n_layer)
            self.embedding = torch.nn.Embedding(vocab, d_model)
            self.mamba = Mamba(self.config)
            self.norm_f = RMSNorm(d_model, self.config.rms_norm_eps)
            self.lm_head = torch.nn.Linear(d_model, vocab, bias=False)
            self.lm_head.weight = self.embedding.weight

        def forward(self, ids):
            return self.lm_head(self.norm_f(self.mamba(self.embedding(ids))))

        def step(self, tok, caches):
            x, caches = self.mamba.step(self.embedding(tok), caches)
            return self.lm_head(self.norm_f(x)), caches

    return MambapyLM()


def _mambapy(cfg: GenerateBenchConfig) -> Contender:
    z = Size.of(cfg, mamba=True)
    model = mambapy_lm(z.d_model, z.n_layer, z.vocab)
    mc = model.config

    def state(batch: int, context: int):
        return [(torch.zeros(batch, mc.d_inner, mc.d_state), torch.zeros(batch, mc.d_inner, mc.d_conv - 1))
                for _ in range(mc.n_layers)]

    return Contender("mambapy", model, state, lambda tok, caches: model.step(tok, caches)[1], lambda ids: model(ids))


BUILDERS: dict[str, Callable[[GenerateBenchConfig], Contender]] = {
    **{p: (lambda cfg, p=p: _ours(p, cfg)) for p in OURS},
    **{f"{p}+native": (lambda cfg, p=p: _ours(p, cfg, "native")) for p in OURS}, "hf-gpt2": _hf_gpt2, "hf-mamba": _hf_mamba,
    "mambapy": _mambapy}


def copy_bandwidth() -> float:
    """Bytes/s of a large copy (read + write), median of 5."""
    src = torch.randn(64 * 1024 * 1024)
    dst = torch.empty_like(src)
    (t,) = median_times(lambda: dst.copy_(src), warmup=2, repeats=5)
    return 2 * src.nbytes / t


@torch.no_grad()
def read_bandwidth() -> float:
    """Bytes/s of a streaming read: a sum over 256 MiB of fp32 (far beyond the caches), median of 5."""
    src = torch.randn(64 * 1024 * 1024)
    (t,) = median_times(lambda: src.sum(), warmup=2, repeats=5)
    return src.nbytes / t


@torch.no_grad()
def decode_latencies(contenders: list[Contender], batch: int, context: int, steps: int, warmup: int,
                     probe: torch.Tensor) -> tuple[list[float], float]:
    """Median seconds per decoded token of each contender, chained from a state of ``context``
    tokens; the contenders take turns step by step, and after each round a streaming read of
    ``probe`` (as many bytes as the largest model's weights) is timed too: this machine's memory
    bandwidth drifts (33-78 GB/s copy across runs here), so the read floor of each point is
    measured in the same rounds as its latencies. Returns (latencies, the probe's median)."""
    if batch * context > INTERLEAVE_TOKENS:  # the states would not fit in memory together: one at a time
        runs = [_latencies([c], batch, context, steps, warmup, probe) for c in contenders]
        return [r[0][0] for r in runs], sorted(r[1] for r in runs)[len(runs) // 2]
    return _latencies(contenders, batch, context, steps, warmup, probe)


def _latencies(contenders, batch, context, steps, warmup, probe) -> tuple[list[float], float]:
    states = [c.state(batch, context) for c in contenders]
    tok = torch.zeros(batch, dtype=torch.long)
    times = [[] for _ in contenders]
    reads = []
    for i in range(warmup + steps):
        for j, c in enumerate(contenders):
            t0 = time.perf_counter()
            states[j] = c.step(tok, states[j])
            if i >= warmup:
                times[j].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        probe.sum()
        reads.append(time.perf_counter() - t0)
    del states
    gc.collect()
    return [sorted(t)[len(t) // 2] for t in times], sorted(reads[warmup:])[len(reads[warmup:]) // 2]


def run(cfg: GenerateBenchConfig, out: Path | None, progress=print) -> dict:
    """Every point; records and machine info written to ``out`` as JSON after each point."""
    unknown = sorted(set(cfg.contenders) - set(BUILDERS))
    if unknown:
        raise ValueError(f"unknown contender(s) {unknown}; expected some of {', '.join(BUILDERS)}")
    torch.manual_seed(0)
    bandwidth, read = copy_bandwidth(), read_bandwidth()
    progress(f"copy bandwidth {bandwidth / 1e9:.1f} GB/s, streaming read {read / 1e9:.1f} GB/s, "
             f"{torch.get_num_threads()} threads")
    result = {"machine": {"torch": torch.__version__, "threads": torch.get_num_threads(), "cpu": platform.processor(),
                          "copy_bytes_per_s": bandwidth, "read_bytes_per_s": read},
              "config": cfg.__dict__, "contenders": {}, "records": [], "skipped": {}}
    contenders = []
    for name in cfg.contenders:
        try:
            contenders.append(BUILDERS[name](cfg))
        except ImportError as e:
            result["skipped"][name] = f"not installed ({e.name}): pip install 'longssm[bench]'"
            progress(f"{name}: skipped, {result['skipped'][name]}")
    ids = torch.zeros(1, cfg.prompt_len, dtype=torch.long)
    with torch.no_grad():
        prompt_s = median_times(*[lambda c=c: c.prefill(ids) for c in contenders], warmup=1, repeats=cfg.prompt_repeats)
    for c, t in zip(contenders, prompt_s):
        floor = c.weight_bytes / bandwidth
        result["contenders"][c.name] = {"weight_bytes": c.weight_bytes, "floor_ms": floor * 1e3,
                                        "read_floor_ms": c.weight_bytes / read * 1e3,
                                        "prompt_tokens_per_s": cfg.prompt_len / t}
        progress(f"{c.name:<17} {c.weight_bytes / 2**20:6,.0f} MiB of weights, floor {floor * 1e3:5.1f} ms/token; "
                 f"prompt of {cfg.prompt_len}: {cfg.prompt_len / t:8,.0f} tokens/s")

    def save():
        if out is not None:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(result, indent=1) + "\n")

    probe = torch.randn(max(c.weight_bytes for c in contenders) // 4)  # fp32: as many bytes as the largest model
    for batch in cfg.batches:
        for ctx in cfg.contexts:
            if batch * ctx > MAX_CACHED_TOKENS:
                result["skipped"][f"batch {batch} context {ctx}"] = (
                    f"{batch * ctx:,} cached tokens: a 12-layer fp32 KV cache of "
                    f"{2 * 12 * batch * ctx * 768 * 4 / 1e9:.0f} GB does not fit in memory here")
                continue
            seconds, read_s = decode_latencies(contenders, batch, ctx, cfg.steps, cfg.warmup, probe)
            for c, s in zip(contenders, seconds):
                floor = result["contenders"][c.name]["floor_ms"] / 1e3
                read_floor = read_s * c.weight_bytes / probe.nbytes  # the same rounds' streaming read
                result["records"].append({"contender": c.name, "batch": batch, "context": ctx,
                                          "ms_per_token": s * 1e3, "x_floor": s / floor,
                                          "interleaved_read_floor_ms": read_floor * 1e3, "x_interleaved_read_floor": s / read_floor})
            progress(f"batch {batch} context {ctx:>6}: " + "  ".join(
                f"{c.name} {s * 1e3:.1f}" for c, s in zip(contenders, seconds)) + " ms/token")
            save()
    save()
    return result


def plot(result: dict, path: Path) -> None:
    """Decode latency against context (log x), one line per contender, a panel per batch size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    batches = sorted({r["batch"] for r in result["records"]})
    fig, axes = plt.subplots(1, len(batches), figsize=(6 * len(batches), 4.5), squeeze=False)
    for ax, batch in zip(axes[0], batches):
        for name in result["contenders"]:
            pts = sorted((r["context"], r["ms_per_token"]) for r in result["records"]
                         if r["contender"] == name and r["batch"] == batch)
            style = "--" if name.startswith(("hf-", "mambapy")) else ("-." if name.endswith("+native") else "-")
            ax.plot(*zip(*pts), marker="o", linestyle=style, label=name)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("context (tokens)")
        ax.set_ylabel("ms per decoded token")
        ax.set_title(f"batch {batch} (solid: longssm, dash-dot: longssm native, dashed: peers)")
        ax.grid(alpha=0.3, which="both")
    axes[0][-1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown(result: dict) -> str:
    """Tables for BENCHMARKS.md: latency per context and batch, distance from the floor at batch 1,
    prompt throughput, and the targets of the comparison."""
    recs = result["records"]
    ms = {(r["contender"], r["batch"], r["context"]): r["ms_per_token"] for r in recs}
    contexts = sorted({r["context"] for r in recs})
    names = list(result["contenders"])
    lines = []
    for batch in sorted({r["batch"] for r in recs}):
        lines += [f"Decode latency, batch {batch} (ms per token):", "",
                  "| contender | " + " | ".join(f"{c:,}" for c in contexts) + " |", "|---|" + "---:|" * len(contexts)]
        lines += [f"| {n} | " + " | ".join(f"{ms[(n, batch, c)]:.1f}" if (n, batch, c) in ms else "—" for c in contexts)
                  + " |" for n in names]
        lines.append("")
    m = result["machine"]
    lines += [f"Floors at batch 1 (weight bytes over the copy bandwidth, {m['copy_bytes_per_s'] / 1e9:.1f} GB/s, and over "
              f"the streaming-read bandwidth, {m['read_bytes_per_s'] / 1e9:.1f} GB/s) and prompt processing:", "",
              "| contender | weights MiB | copy floor ms | read floor ms | shortest context: x copy floor | "
              "x read floor | x read floor measured in the same rounds | prompt tokens/s |",
              "|---|---:|---:|---:|---:|---:|---:|---:|"]
    inter = {r["contender"]: r for r in recs if r["batch"] == 1 and r["context"] == contexts[0]}
    for n in names:
        c = result["contenders"][n]
        t = ms[(n, 1, contexts[0])]
        lines.append(f"| {n} | {c['weight_bytes'] / 2**20:,.0f} | {c['floor_ms']:.1f} | {c['read_floor_ms']:.1f} | "
                     f"{t / c['floor_ms']:.2f} | {t / c['read_floor_ms']:.2f} | "
                     f"{inter[n].get('x_interleaved_read_floor', float('nan')):.2f} | {c['prompt_tokens_per_s']:,.0f} |")
    return "\n".join(lines) + "\n"
