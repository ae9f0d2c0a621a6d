"""Batch loaders over a token array, resumable from a step number alone.

* :class:`RandomWindows`: independent random windows (the usual zero-state training).
* :class:`ConsecutiveStreams`: LongSSM's equidistant sampler. The token stream is cut into
  ``global_batch`` equal streams; row b of batch i+1 continues row b of batch i, so a state carried
  from one batch to the next is the state of the same text. ``reset`` marks rows whose state must
  be zeroed: at the start of every pass over the streams (epoch) and for a segment that contains a
  document start (the new document must not inherit the previous one's state).

Batches are defined for the *global* batch; a process of a ``world``-sized run takes rows
``[rank * B, (rank + 1) * B)``, so a multi-process run sees exactly the batches of a
single-process run with the same global batch.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch


class Batch(NamedTuple):
    inputs: torch.Tensor  # (batch, seq_len) long
    targets: torch.Tensor  # (batch, seq_len) long: inputs shifted by one
    reset: torch.Tensor  # (batch,) bool: zero the carried state before this batch


def _rows(global_batch: int, rank: int, world: int) -> slice:
    if global_batch % world:
        raise ValueError(f"batch size {global_batch} must be divisible by the number of processes {world}")
    per = global_batch // world
    return slice(rank * per, (rank + 1) * per)


class RandomWindows:
    def __init__(self, tokens: np.ndarray, global_batch: int, seq_len: int, seed: int = 0,
                 rank: int = 0, world: int = 1):
        if tokens.size < seq_len + 1:
            raise ValueError(f"the corpus has {tokens.size} tokens, fewer than seq_len + 1 = {seq_len + 1}")
        self.tokens, self.batch, self.seq_len, self.seed = tokens, global_batch, seq_len, seed
        self.rows = _rows(global_batch, rank, world)

    def batch_at(self, step: int) -> Batch:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + step)
        starts = torch.randint(0, self.tokens.size - self.seq_len, (self.batch,), generator=g)[self.rows]
        win = torch.from_numpy(np.stack([self.tokens[s: s + self.seq_len + 1] for s in starts.tolist()]).astype(np.int64))
        return Batch(win[:, :-1], win[:, 1:], torch.zeros(len(starts), dtype=torch.bool))


class ConsecutiveStreams:
    def __init__(self, tokens: np.ndarray, doc_starts: np.ndarray, global_batch: int, seq_len: int,
                 rank: int = 0, world: int = 1):
        self.stream_len = (tokens.size - 1) // global_batch
        self.per_epoch = self.stream_len // seq_len  # segments per stream per pass
        if self.per_epoch < 1:
            raise ValueError(f"the corpus has {tokens.size} tokens: too few for {global_batch} streams "
                             f"of at least seq_len + 1 = {seq_len + 1}")
        self.tokens, self.seq_len = tokens, seq_len
        self.rows = _rows(global_batch, rank, world)
        self.offsets = np.arange(global_batch, dtype=np.int64)[self.rows] * self.stream_len
        self.doc_starts = np.asarray(doc_starts, dtype=np.int64)

    def batch_at(self, step: int) -> Batch:
        i = step % self.per_epoch
        starts = self.offsets + i * self.seq_len
        win = np.stack([self.tokens[s: s + self.seq_len + 1] for s in starts]).astype(np.int64)
        # A document start inside this segment's inputs, or the first segment of a pass.
        lo = np.searchsorted(self.doc_starts, starts, side="left")
        hi = np.searchsorted(self.doc_starts, starts + self.seq_len, side="left")
        reset = torch.from_numpy(hi > lo) | (i == 0)
        win = torch.from_numpy(win)
        return Batch(win[:, :-1], win[:, 1:], reset)
