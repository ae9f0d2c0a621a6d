"""Validation loss at a given evaluation length, in two clearly named modes.

* ``zero``: independent windows of ``eval_len`` tokens, each from the zero state (what a model
  trained with zero states sees in training);
* ``streaming``: the text is read as ``batch`` consecutive streams in windows of ``eval_len``,
  each window starting from the state the previous window left (detached): SSM layers see all
  earlier context through their state; attention layers keep the KV cache of the last
  ``context`` tokens (default ``eval_len``), so a token attends to between ``context`` and
  ``context + eval_len - 1`` earlier tokens, and the cost and memory of a window do not grow with
  the text read so far.

Both report the mean negative log-likelihood in nats per predicted token (perplexity = exp). The
LM head and the loss run over chunks of tokens, so memory holds the window's hidden states but
never the whole window's logits (batch x eval_len x vocabulary).
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from longssm.layers.state import detach_state
from longssm.models import LanguageModel
from longssm.models.sharded import root_gathered
from longssm.models.state import bound_context

LOGITS_PER_CHUNK = 1 << 24  # logits (tokens x vocabulary) held at once: 64 MiB in float32

MODES = ("zero", "streaming")


def scored_tokens(n_tokens: int, eval_len: int, batch: int = 8, max_tokens: int | None = None) -> int:
    """How many of ``n_tokens`` tokens :func:`evaluate` scores: whole windows of ``eval_len`` in
    ``batch`` equal streams over the first ``max_tokens`` (None: all) targets."""
    n = n_tokens - 1 if max_tokens is None else min(n_tokens - 1, max_tokens)
    return n // batch // eval_len * eval_len * batch


@torch.no_grad()
def evaluate(model: LanguageModel, tokens: np.ndarray, eval_len: int, mode: str = "zero", *,
             batch: int = 8, max_tokens: int | None = None, context: int | None = None, device="cpu",
             progress: Callable[[int], None] | None = None) -> dict:
    """Mean NLL over (at most ``max_tokens`` of) ``tokens`` at window length ``eval_len``;
    ``context``: attention's KV cache kept across windows in streaming mode (default eval_len)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    per_stream = scored_tokens(tokens.size, eval_len, batch, max_tokens) // batch
    if per_stream == 0:
        raise ValueError(f"{tokens.size} tokens are too few for {batch} streams of eval_len={eval_len}")
    was_training = model.training
    model.eval()
    starts = np.arange(batch) * per_stream
    total, count, state = 0.0, 0, None
    for w in range(per_stream // eval_len):
        off = starts + w * eval_len
        win = torch.from_numpy(np.stack([tokens[o: o + eval_len + 1] for o in off]).astype(np.int64)).to(device)
        nll, new_state = _nll(model, win, state, return_state=mode == "streaming")
        total += nll
        count += win[:, 1:].numel()
        state = bound_context(detach_state(new_state), context or eval_len) if mode == "streaming" else None
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


ORDERS = ("consecutive", "shuffled")


def cut_streams(docs: list[np.ndarray], stream_len: int, max_streams: int | None = None) -> np.ndarray:
    """Consecutive pieces of ``stream_len + 1`` tokens from each document (never across two),
    taken round-robin over the documents so a cap keeps every document represented:
    (n_streams, stream_len + 1). Every evaluation length that divides ``stream_len`` then scores
    exactly the same tokens."""
    per_doc = [[d[i * stream_len: (i + 1) * stream_len + 1] for i in range((d.size - 1) // stream_len)] for d in docs]
    pieces = [p for group in _round_robin(per_doc) for p in group]
    if not pieces:
        raise ValueError(f"no document has the {stream_len + 1} tokens one stream needs")
    return np.stack(pieces[:max_streams]).astype(np.int64)


def _round_robin(per_doc):
    for i in range(max(len(p) for p in per_doc)):
        yield [p[i] for p in per_doc if i < len(p)]


@torch.no_grad()
def evaluate_streams(model: LanguageModel, streams: np.ndarray, eval_len: int, mode: str = "zero",
                     order: str = "consecutive", *, seed: int = 0, tokens_per_forward: int = 1 << 16,
                     context: int | None = None, device="cpu") -> dict:
    """Mean NLL (nats/token) over ``streams`` (n, S + 1) cut into windows of ``eval_len`` (divides S).

    ``zero``: every window from the zero state (windows batched freely). ``streaming``: each
    stream's windows in ``order``, each window starting from the state the previous one left:
    ``consecutive`` is reading the text; ``shuffled`` visits the windows of every stream in a
    random order (seeded), so the carried state comes from unrelated text of the same book, the
    check that a model really uses its state. In zero mode the order changes nothing. ``context``:
    attention's KV cache kept across windows (default eval_len).
    """
    if mode not in MODES or order not in ORDERS:
        raise ValueError(f"mode must be one of {MODES} and order one of {ORDERS}, got {mode!r}, {order!r}")
    n, S = streams.shape[0], streams.shape[1] - 1
    if eval_len < 1 or S % eval_len:
        raise ValueError(f"eval_len={eval_len} must divide the stream length {S}")
    W = S // eval_len
    rng = np.random.default_rng(seed)
    visit = np.stack([rng.permutation(W) if order == "shuffled" else np.arange(W) for _ in range(n)])  # (n, W)
    starts = visit * eval_len
    was_training = model.training
    model.eval()
    total = 0.0
    cols = np.arange(eval_len + 1)
    if mode == "zero":
        wins = streams[np.arange(n)[:, None, None], starts[:, :, None] + cols].reshape(n * W, eval_len + 1)
        per = max(1, tokens_per_forward // eval_len)
        for chunk in np.array_split(wins, -(-len(wins) // per)):
            total += _nll(model, torch.from_numpy(chunk).to(device), None, return_state=False)[0]
    else:
        state = None
        for w in range(W):
            win = torch.from_numpy(streams[np.arange(n)[:, None], starts[:, w, None] + cols]).to(device)
            nll, state = _nll(model, win, state)
            total += nll
            state = bound_context(detach_state(state), context or eval_len)
    model.train(was_training)
    loss = total / (n * S)
    return {"mode": mode, "order": order, "eval_len": eval_len, "loss": loss, "tokens": n * S}


@torch.no_grad()
def document_nll(model: LanguageModel, tokens: torch.Tensor, window: int = 2048) -> float:
    """Summed NLL (nats) of tokens[1:] (1-D) given every earlier token: the document is read in
    windows of ``window`` tokens with the state carried and nothing dropped (attention keeps its
    whole KV cache), so there is no context limit for any layer."""
    if tokens.dim() != 1 or tokens.numel() < 2:
        raise ValueError(f"tokens must be 1-D with at least 2 tokens, got shape {tuple(tokens.shape)}")
    total, state = 0.0, None
    for s in range(0, tokens.numel() - 1, window):
        nll, state = _nll(model, tokens[s: s + window + 1][None], state)
        total += nll
    return total


def _nll(model, win, state, return_state=True):
    """Summed NLL of win[:, 1:] given win[:, :-1] from ``state``, and the state left; the head
    and the loss run over chunks of at most LOGITS_PER_CHUNK logits."""
    with root_gathered(model):  # an FSDP model's embedding and head, called here directly
        return _nll_gathered(model, win, state, return_state)


def _nll_gathered(model, win, state, return_state):
    x, new_state = model.backbone(win[:, :-1], state, return_state=return_state)
    x, targets = x.flatten(0, 1), win[:, 1:].flatten()
    per = max(1, LOGITS_PER_CHUNK // model.config.vocab_size)
    total = 0.0
    for i in range(0, targets.numel(), per):
        logits = model.head(x[i: i + per])
        logits = logits.to(torch.promote_types(logits.dtype, torch.float32))  # bf16 -> fp32, fp64 kept
        total += F.cross_entropy(logits, targets[i: i + per], reduction="sum").item()
    return total, new_state
