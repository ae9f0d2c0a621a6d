"""Decode speed through ``transformers``' ``generate()`` against longssm's own ``generate`` on the
same model: greedy, batch 1, fp32, the same prompt and number of new tokens, interleaved runs,
medians (``longssm bench hf``). Both run the prompt once and then one recurrent step per token, so
the difference is the wrapper: ``generate()``'s per-token bookkeeping (logits processors, stopping
criteria, growing ``input_ids``, model-kwargs updates) around the same ``step``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from longssm.integrations.hf import to_hf
from longssm.models import LanguageModel, generate, get_preset

PRESETS = ("tiny-hybrid", "tiny-mamba", "hybrid-h3-125m", "mamba-130m")


def run(out: Path | None, presets=PRESETS, prompt_len: int = 64, new_tokens: int = 64, repeats: int = 5,
        progress=print) -> dict:
    rows = []
    for name in presets:
        torch.manual_seed(0)
        vocab = 256 if name.startswith("tiny-") else 50280
        model = LanguageModel(get_preset(name, vocab_size=vocab)).eval()
        wrapped = to_hf(model)
        prompt = torch.randint(0, vocab, (1, prompt_len), generator=torch.Generator().manual_seed(1))
        runs = {
            "longssm": lambda: generate(model, prompt, new_tokens, temperature=0.0).tokens,
            "transformers": lambda: wrapped.generate(prompt, max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                                                     do_sample=False, pad_token_id=0)[:, prompt_len:],
        }
        with torch.no_grad():
            same = torch.equal(runs["longssm"](), runs["transformers"]())  # warm-up, and the same tokens
            times = {k: [] for k in runs}
            for _ in range(repeats):
                for k, f in runs.items():
                    t0 = time.perf_counter()
                    f()
                    times[k].append(time.perf_counter() - t0)
        med = {k: sorted(v)[len(v) // 2] for k, v in times.items()}
        row = {"preset": name, "same_tokens": same,
               **{f"{k}_tokens_per_s": new_tokens / t for k, t in med.items()},
               "overhead": med["transformers"] / med["longssm"] - 1,
               "per_token_overhead_ms": (med["transformers"] - med["longssm"]) / new_tokens * 1e3}
        rows.append(row)
        progress(f"{name}: longssm {row['longssm_tokens_per_s']:.1f} tok/s, transformers generate() "
                 f"{row['transformers_tokens_per_s']:.1f} tok/s (+{row['overhead']:.0%}, "
                 f"{row['per_token_overhead_ms']:.2f} ms per token), same tokens: {same}")
    result = {"meta": {"torch": torch.__version__, "threads": torch.get_num_threads(), "prompt_len": prompt_len,
                       "new_tokens": new_tokens, "repeats": repeats}, "rows": rows}
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")
    return result
