"""Synthetic recall tasks of the H3 paper (section 3.1, Table 2) and Zoology's multi-query recall.

Every generator is a pure function of (config, seed): a ``numpy`` generator seeded once draws all
examples; examples are de-duplicated and split into disjoint train and test sets. An example is a
token sequence ``seq``; models read ``seq[:-1]`` and predict ``seq[1:]``. Accuracy counts only the
``mask`` positions (the last token for the H3 tasks, as in the paper, so training accuracy is not
comparable to the loss on the random context tokens, which are unpredictable by design). The H3
tasks train on the loss at every next-token position, as the paper does; MQAR trains on the loss
at the query positions only (``TaskData.loss_on_scored``), as Zoology does (its labels are -100
everywhere else).

Token ids: ordinary tokens first, then the specials ``=>`` (copy prefix) and ``.`` (no-op, used
as padding by MQAR).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class TaskData:
    name: str
    vocab_size: int
    train: torch.Tensor  # (n_train, seq_len + 1) long
    test: torch.Tensor  # (n_test, seq_len + 1) long
    train_mask: torch.Tensor  # (n_train, seq_len) bool: positions scored by accuracy
    test_mask: torch.Tensor  # (n_test, seq_len) bool
    loss_on_scored: bool = False  # train on the masked positions only (MQAR) instead of every position


def _specials(vocab_size: int) -> tuple[int, int]:
    return vocab_size - 2, vocab_size - 1  # "=>", "."


def induction_example(rng: np.random.Generator, vocab_size: int = 20, seq_len: int = 30) -> np.ndarray:
    """One induction-head example (H3 section 3.1; the safari generator's layout).

    ``seq_len`` random ordinary tokens with ``=>`` written at a random position p and the token x
    after it kept, then ``=> x``: the model must recall what followed the earlier ``=>``.
    Worked example (vocab 20: ordinary 0-17, ``=>`` = 18), seq_len 6::

        3 18 7 12 5 9 | 18 7     inputs: 3 18 7 12 5 9 18   target of the last input: 7
    """
    copy, _ = _specials(vocab_size)
    seq = rng.integers(0, vocab_size - 2, seq_len)
    p = rng.integers(0, seq_len - 1)
    seq[p] = copy
    return np.concatenate([seq, [copy, seq[p + 1]]])


def associative_example(rng: np.random.Generator, vocab_size: int = 10, seq_len: int = 20) -> np.ndarray:
    """One associative-recall example (H3 section 3.1): a fresh random key->value map, seq_len/2
    (key, value) pairs drawn from it, then ``=> k v`` for a key k that occurred.
    Keys are the first half of the ordinary tokens, values the second half (vocab 10: keys 0-3,
    values 4-7, ``=>`` = 8; chance is 25%). Worked example, seq_len 6::

        2 5 0 7 2 5 | 8 0 7      inputs: 2 5 0 7 2 5 8 0   target of the last input: 7
    """
    copy, _ = _specials(vocab_size)
    n = (vocab_size - 2) // 2
    values = rng.integers(n, 2 * n, n)  # the map: key i -> values[i]
    keys = rng.integers(0, n, seq_len // 2)
    pairs = np.stack([keys, values[keys]], 1).reshape(-1)
    k = rng.choice(keys)
    return np.concatenate([pairs, [copy, k, values[k]]])


def mqar_example(rng: np.random.Generator, vocab_size: int = 8192, seq_len: int = 64,
                 n_pairs: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """One multi-query associative-recall example (Arora et al., Zoology, 2023, section 3).

    ``n_pairs`` distinct keys with random values, then the query region: the no-op token ``.``
    with every key inserted once at a random position; the target after each inserted key is its
    value. Returns the sequence (seq_len + 1) and the mask of scored input positions (seq_len).
    Zoology spaces queries by a power law; here query slots are uniform over the query region.
    Worked example (vocab 10: keys 0-3, values 4-7, ``.`` = 9), 2 pairs, seq_len 8::

        1 6 3 4 3 4 1 6 .       pairs (1, 6), (3, 4), then the queries 3 and 1;
                                scored inputs: positions 4 and 6 (targets 4 and 6)
    """
    _, noop = _specials(vocab_size)
    n = (vocab_size - 2) // 2
    if 4 * n_pairs > seq_len:
        raise ValueError(f"{n_pairs} pairs and their queries do not fit in seq_len={seq_len}")
    keys = rng.choice(n, n_pairs, replace=False)
    values = rng.integers(n, 2 * n, n_pairs)
    seq = np.full(seq_len + 1, noop, dtype=np.int64)
    seq[: 2 * n_pairs] = np.stack([keys, values], 1).reshape(-1)
    region = np.arange(2 * n_pairs, seq_len, 2)  # query slots, each followed by its value
    slots = np.sort(rng.choice(region, n_pairs, replace=False))
    order = rng.permutation(n_pairs)
    seq[slots], seq[slots + 1] = keys[order], values[order]
    mask = np.zeros(seq_len, dtype=bool)
    mask[slots] = True  # the input at a query key predicts the value after it
    return seq, mask


def _unique_split(make, n_train: int, n_test: int, seed: int):
    """Draw distinct examples until there are n_train + n_test, then split (no overlap)."""
    rng = np.random.default_rng(seed)
    seen, seqs, masks = set(), [], []
    attempts = 0
    while len(seqs) < n_train + n_test:
        attempts += 1
        if attempts > 50 * (n_train + n_test):
            raise ValueError(f"cannot draw {n_train + n_test} distinct examples from this task")
        seq, mask = make(rng)
        key = seq.tobytes()
        if key in seen:
            continue
        seen.add(key)
        seqs.append(seq)
        masks.append(mask)
    seqs, masks = torch.from_numpy(np.stack(seqs)).long(), torch.from_numpy(np.stack(masks))
    return seqs[:n_train], seqs[n_train:], masks[:n_train], masks[n_train:]


def _last_only(seq_len: int):
    mask = np.zeros(seq_len, dtype=bool)
    mask[-1] = True
    return mask


#: the H3 paper's training-set size (section 3.1); the CLI's default for every task, MQAR included
TRAIN_EXAMPLES = 5000


def make_task(name: str, seed: int = 0, n_train: int = TRAIN_EXAMPLES, n_test: int = 500, *,
              seq_len: int | None = None, n_pairs: int = 8, vocab_size: int | None = None) -> TaskData:
    """Train/test sets of a task: ``induction_head``, ``associative_recall`` or ``mqar``."""
    if name == "induction_head":
        V, L = vocab_size or 20, seq_len or 30
        make = lambda rng: (induction_example(rng, V, L), _last_only(L + 1))
    elif name == "associative_recall":
        V, L = vocab_size or 10, seq_len or 20
        make = lambda rng: (associative_example(rng, V, L), _last_only(L + 2))
    elif name == "mqar":
        V, L = vocab_size or 8192, seq_len or 64
        make = lambda rng: mqar_example(rng, V, L, n_pairs)
    else:
        raise ValueError(f"unknown task {name!r}; expected induction_head, associative_recall or mqar")
    train, test, train_mask, test_mask = _unique_split(make, n_train, n_test, seed)
    return TaskData(name, V, train, test, train_mask, test_mask, loss_on_scored=name == "mqar")
