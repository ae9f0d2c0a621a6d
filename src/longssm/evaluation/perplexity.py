"""Validation loss at a given evaluation length, in two clearly named modes.

* ``zero``: independent windows of ``eval_len`` tokens, each from the zero state (what a model
  trained with zero states sees in training);
* ``streaming``: the text is read as ``batch`` consecutive streams in windows of ``eval_len``,
  each window starting from the state the previous window left (detached): the model sees all
  earlier context through its state (attention through its KV cache).

Both report the mean negative log-likelihood in nats per predicted token (perplexity = exp).
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from longssm.layers.state import detach_state
from longssm.models import LanguageModel

MODES = ("zero", "streaming")


@torch.no_grad()
def evaluate(model: LanguageModel, tokens: np.ndarray, eval_len: int, mode: str = "zero", *,
             batch: int = 8, max_tokens: int | None = None, device="cpu",
             progress: Callable[[int], None] | None = None) -> dict:
    """Mean NLL over (at most ``max_tokens`` of) ``tokens`` at window length ``eval_len``."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    n = tokens.size - 1 if max_tokens is None else min(tokens.size - 1, max_tokens)
    per_stream = n // batch // eval_len * eval_len  # whole windows per stream
    if per_stream == 0:
        raise ValueError(f"{tokens.size} tokens are too few for {batch} streams of eval_len={eval_len}")
    was_training = model.training
    model.eval()
    starts = np.arange(batch) * per_stream
    total, count, state = 0.0, 0, None
    for w in range(per_stream // eval_len):
        off = starts + w * eval_len
        win = torch.from_numpy(np.stack([tokens[o: o + eval_len + 1] for o in off]).astype(np.int64)).to(device)
        logits, new_state = model(win[:, :-1], state if mode == "streaming" else None)
        logits = logits.to(torch.promote_types(logits.dtype, torch.float32))  # bf16 -> fp32, fp64 kept
        total += F.cross_entropy(logits.flatten(0, 1), win[:, 1:].flatten(), reduction="sum").item()
        count += win[:, 1:].numel()
        state = detach_state(new_state) if mode == "streaming" else None
        if progress:
            progress(count)
    model.train(was_training)
    loss = total / count
    return {"mode": mode, "eval_len": eval_len, "loss": loss, "perplexity": math.exp(loss), "tokens": count}


def unigram_loss(train_tokens: np.ndarray, eval_tokens: np.ndarray, vocab_size: int) -> float:
    """Cross-entropy (nats/token) of an add-one-smoothed unigram model fitted on the training
    tokens: the baseline a language model must clearly beat."""
    counts = np.bincount(np.asarray(train_tokens, dtype=np.int64), minlength=vocab_size) + 1.0
    logp = np.log(counts / counts.sum())
    return float(-logp[np.asarray(eval_tokens, dtype=np.int64)].mean())
