"""ListOps (Nangia & Bowman 2018) as Long Range Arena uses it (Tay et al. 2021, section 3.1),
reimplemented from the LRA paper's description: nested lists of the operators MIN, MAX, MED
(median) and SM (sum modulo 10) over the digits 0-9, at most ``max_depth`` levels and
``max_args`` arguments per operator; the label (10 classes) is the expression's value.

Example (tokens separated by spaces): ``[MAX 4 3 [MIN 2 3 ] 1 0 [MED 1 5 8 9 2 ] ]`` has the value 5. LRA draws sequences of 500-2,000 tokens with
depth <= 10 and <= 10 arguments (``LRA`` preset); ``CPU`` is a smaller-length preset for this
machine (lengths 64-256, depth <= 6, <= 6 arguments). MED of an even count is the integer part of
the mean of the two middle values (LRA's ``int(np.median)``).

Tree sizes: a target length is drawn uniformly from [min_len, max_len] and a tree is grown top-down
(a node is a digit with probability ``leaf_p`` once below the root, always at the depth limit)
until the target's token budget is spent; trees that end outside [min_len, max_len] are drawn again.
(Our choice: the LRA paper gives the limits, not the sampler.) Train and test sets hold distinct
expressions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

DIGITS = [str(d) for d in range(10)]
OPERATORS = ["[MIN", "[MAX", "[MED", "[SM"]
CLOSE = "]"
VOCAB = DIGITS + OPERATORS + [CLOSE, "<pad>"]  # ids 0-9 are the digits themselves
PAD = VOCAB.index("<pad>")
TOKEN_ID = {t: i for i, t in enumerate(VOCAB)}


@dataclass(frozen=True)
class ListOpsConfig:
    min_len: int = 64
    max_len: int = 256
    max_depth: int = 6
    max_args: int = 6
    leaf_p: float = 0.25


LRA = ListOpsConfig(min_len=500, max_len=2000, max_depth=10, max_args=10)
CPU = ListOpsConfig()


def apply(op: str, values: list[int]) -> int:
    if op == "[MIN":
        return min(values)
    if op == "[MAX":
        return max(values)
    if op == "[MED":
        s = sorted(values)
        mid = len(s) // 2
        return s[mid] if len(s) % 2 else (s[mid - 1] + s[mid]) // 2
    if op == "[SM":
        return sum(values) % 10
    raise ValueError(f"unknown operator {op!r}")


def _grow(rng: np.random.Generator, cfg: ListOpsConfig, depth: int, budget: list[int]) -> tuple[list[str], int]:
    """(tokens, value) of a random subtree; ``budget`` counts tokens left before the tree is too long."""
    if depth > 0 and (depth >= cfg.max_depth or rng.random() < cfg.leaf_p):
        d = int(rng.integers(10))
        budget[0] -= 1
        return [str(d)], d
    op = OPERATORS[int(rng.integers(len(OPERATORS)))]
    tokens, values = [op], []
    budget[0] -= 2
    for _ in range(int(rng.integers(2, cfg.max_args + 1))):
        if budget[0] <= 0:
            break
        t, v = _grow(rng, cfg, depth + 1, budget)
        tokens += t
        values.append(v)
    if not values:  # the budget ran out before any argument: a single digit argument
        d = int(rng.integers(10))
        tokens.append(str(d))
        values.append(d)
    return tokens + [CLOSE], apply(op, values)


def expression(rng: np.random.Generator, cfg: ListOpsConfig, max_tries: int = 10_000) -> tuple[list[str], int]:
    """One expression whose length lies in [min_len, max_len], and its value."""
    for _ in range(max_tries):
        target = int(rng.integers(cfg.min_len, cfg.max_len + 1))
        tokens, value = _grow(rng, cfg, 0, [target - 1])  # the closing bracket of the root is not budgeted
        if cfg.min_len <= len(tokens) <= cfg.max_len:
            return tokens, value
    raise RuntimeError(f"no expression of {cfg.min_len}-{cfg.max_len} tokens in {max_tries} tries; "
                       f"widen the lengths or raise max_depth / max_args")


def evaluate(tokens: list[str]) -> int:
    """The value of an expression by a stack machine (independent of the generator)."""
    stack: list[list] = []
    result = None
    for tok in tokens:
        if tok in OPERATORS:
            stack.append([tok])
        elif tok == CLOSE:
            op, *values = stack.pop()
            result = apply(op, values)
            if stack:
                stack[-1].append(result)
        else:
            if not stack:
                return int(tok)
            stack[-1].append(int(tok))
    if stack or result is None:
        raise ValueError("unbalanced expression")
    return result


@dataclass(frozen=True)
class ListOpsData:
    tokens: torch.Tensor  # (n, max_len) long, right-padded with PAD
    mask: torch.Tensor  # (n, max_len) bool: real tokens
    labels: torch.Tensor  # (n,) long in [0, 10)


def make_split(n_train: int, n_test: int, seed: int, cfg: ListOpsConfig = CPU) -> tuple[ListOpsData, ListOpsData]:
    """Distinct expressions for training and test, drawn from ``seed``."""
    rng = np.random.default_rng(seed)
    seen: dict[str, tuple[list[str], int]] = {}
    while len(seen) < n_train + n_test:
        tokens, value = expression(rng, cfg)
        seen.setdefault(" ".join(tokens), (tokens, value))
    items = list(seen.values())
    return _pack(items[:n_train], cfg.max_len), _pack(items[n_train:], cfg.max_len)


def _pack(items, max_len: int) -> ListOpsData:
    ids = torch.full((len(items), max_len), PAD, dtype=torch.long)
    for i, (tokens, _) in enumerate(items):
        ids[i, : len(tokens)] = torch.tensor([TOKEN_ID[t] for t in tokens])
    return ListOpsData(ids, ids != PAD, torch.tensor([v for _, v in items]))
