"""Evaluation speed: streaming against zero-state evaluation of the same tokens, side by side.

For each tiny preset and window length, one process times (interleaved medians, see
:func:`longssm.evaluation.bench_kernels.median_times`) ``zero`` windows, ``streaming`` with
attention's context bounded by the window (the default), and ``streaming`` with an unbounded KV
cache (what streaming did before the bound: every window attends to all text read so far). The
ratio streaming / zero is the cost of carrying the state. Weights are random: speed does not
depend on them.
"""

from __future__ import annotations

import json
import platform
from pathlib import Path

import numpy as np
import torch

from longssm.evaluation.bench_kernels import median_times
from longssm.evaluation.perplexity import evaluate
from longssm.models import LanguageModel, get_preset

PRESETS = ("tiny-h3", "tiny-mamba", "tiny-hybrid", "tiny-transformer")
UNBOUNDED = 1 << 62


def bench_preset(preset: str, eval_len: int, tokens: np.ndarray, batch: int, warmup: int, repeats: int) -> dict:
    torch.manual_seed(0)
    model = LanguageModel(get_preset(preset))
    runs = {"zero": lambda: evaluate(model, tokens, eval_len, "zero", batch=batch),
            "streaming": lambda: evaluate(model, tokens, eval_len, "streaming", batch=batch),
            "streaming_unbounded": lambda: evaluate(model, tokens, eval_len, "streaming", batch=batch,
                                                    context=UNBOUNDED)}
    seconds = dict(zip(runs, median_times(*runs.values(), warmup=warmup, repeats=repeats)))
    n = batch * ((tokens.size - 1) // batch // eval_len * eval_len)  # tokens scored per run (whole windows)
    return {"preset": preset, "eval_len": eval_len, "batch": batch, "tokens": n,
            **{f"{k}_tok_s": n / s for k, s in seconds.items()},
            "streaming_over_zero": seconds["streaming"] / seconds["zero"],
            "unbounded_over_zero": seconds["streaming_unbounded"] / seconds["zero"]}


def format_record(r: dict) -> str:
    return (f"{r['preset']:<17} L={r['eval_len']:<5} zero {r['zero_tok_s']:>8,.0f} tok/s  streaming "
            f"{r['streaming_tok_s']:>8,.0f} ({r['streaming_over_zero']:.2f}x the time)  unbounded "
            f"{r['streaming_unbounded_tok_s']:>8,.0f} ({r['unbounded_over_zero']:.2f}x)")


def run(out: Path | None, *, quick: bool = False, warmup: int = 1, repeats: int = 3, progress=print) -> list[dict]:
    batch, per_stream = 8, 256 if quick else 16384
    tokens = np.random.default_rng(0).integers(0, 256, batch * per_stream + 1).astype(np.uint16)
    lengths = (64,) if quick else (256, 1024)
    records = []
    for preset in PRESETS:
        for L in lengths:
            records.append(bench_preset(preset, L, tokens, batch, warmup, repeats))
            progress(format_record(records[-1]))
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        machine = {"torch": torch.__version__, "threads": torch.get_num_threads(), "cpu": platform.processor()}
        out.write_text(json.dumps({"machine": machine, "records": records}, indent=1) + "\n")
    return records
