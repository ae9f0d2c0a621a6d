"""``longssm demo``: the README's main job on the embedded corpus, in about five minutes on 2 cores.

Trains ``tiny-hybrid`` on the documentation of Python's standard library (byte tokens), then
prints validation loss in both evaluation modes next to a unigram baseline, and a sample.
"""

from __future__ import annotations

import dataclasses
import math
import tempfile
import time

import torch

from longssm.configs import apply_overrides


def demo(out_dir: str, minutes: float, overrides: list[str]) -> int:
    if not minutes > 0:
        raise ValueError(f"--minutes must be > 0, got {minutes}")
    from longssm.data.prepare import prepare_splits
    from longssm.evaluation.perplexity import evaluate, unigram_loss
    from longssm.models import generate, load_model
    from longssm.training.config import resolve
    from longssm.training.loop import train

    raw = {"model": {"preset": "tiny-hybrid"},
           "data": {"train": ["embedded"], "tokenizer": "byte", "cache_dir": f"{out_dir}/data"},
           "train": {"steps": 100_000, "max_minutes": minutes, "batch_size": 16, "seq_len": 256,
                     "lr": 2e-3, "warmup_steps": 100, "eval_every": 0, "eval_batches": 4,
                     "checkpoint_every": 500, "log_every": 20, "out_dir": out_dir}}
    cfg = resolve(apply_overrides(raw, overrides))
    # The cosine schedule needs a horizon in steps: time a few steps, then fit the budget. The
    # probe trains in a folder of its own, so a second demo at once cannot delete it mid-run (the
    # main run's folder is guarded by its lock).
    with tempfile.TemporaryDirectory(prefix="longssm-demo-probe-") as probe_dir:
        probe = dataclasses.replace(cfg.train, steps=15, max_minutes=0.0, out_dir=probe_dir, checkpoint_every=10_000)
        t0 = time.time()
        train(dataclasses.replace(cfg, train=probe), progress=False, log=lambda *_: None)
        per_step = (time.time() - t0) / probe.steps
    steps = max(50, int(minutes * 60 / per_step * 0.9))
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, steps=steps))
    print(f"training tiny-hybrid for {steps} steps (~{minutes:g} minutes) on the embedded corpus "
          f"(documentation of Python's standard library, byte tokens)")
    metrics = train(cfg, overwrite=True)  # the demo replaces its previous run in out_dir
    model, tokenizer, record, _ = load_model(out_dir)
    train_shard, valid_shard = prepare_splits(cfg.data, cfg.data.cache_dir, log=lambda *_: None)
    max_tokens = 64 * 1024
    base = unigram_loss(train_shard.tokens, valid_shard.tokens[: max_tokens + 1], tokenizer.vocab_size)
    print(f"\nvalidation ({max_tokens:,} tokens, nats/token; perplexity in brackets), after step {record['step']}:")
    print(f"  unigram baseline              {base:.3f}  ({math.exp(base):.2f})")
    for mode, L in (("zero", 256), ("zero", 1024), ("streaming", 256)):
        r = evaluate(model, valid_shard.tokens, L, mode, batch=8, max_tokens=max_tokens)
        label = f"{mode}-state windows, L={L}" if mode == "zero" else f"streaming, windows of {L}"
        print(f"  {label:<29} {r['loss']:.3f}  ({r['perplexity']:.2f})")
    prompt = "Return a new list"
    out = generate(model, torch.tensor([tokenizer.encode(prompt)]), 200, temperature=0.8, top_k=40,
                   generator=torch.Generator().manual_seed(0))
    print(f"\nsample (temperature 0.8, top-k 40):\n{prompt}{tokenizer.decode(out.tokens[0].tolist())}")
    return 0 if metrics else 1
