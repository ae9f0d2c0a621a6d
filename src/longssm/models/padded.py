"""Batches of sequences of different lengths, without any state ever seeing padding.

A recurrent state runs over every position it is given, so a padded batch cannot go through the
model as one tensor: the state of a short row would absorb the padding after it (right padding)
or start from it (left padding). Here rows are **grouped by length** and each group runs as its
own batch of exactly its length: every row gets the logits, the final state and the continuation
it gets alone, and the work done is exactly the real tokens. Decoding continues group by group
(:class:`GroupedState`), since attention caches of different lengths do not stack.

``lengths`` (batch,) gives each right-padded row's number of real tokens; :func:`from_mask`
turns an attention mask (right- or left-padded) into lengths and right-aligned rows.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from longssm.models.model import LanguageModel


class GroupedState(NamedTuple):
    """Per group of rows: the rows' indices in the batch and their ModelState (in index order)."""

    rows: tuple[torch.Tensor, ...]
    states: tuple


def check_lengths(lengths: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
    if not isinstance(lengths, torch.Tensor) or lengths.dtype not in (torch.int64, torch.int32) \
            or lengths.shape != input_ids.shape[:1]:
        raise ValueError(f"lengths must be an integer tensor of shape ({input_ids.shape[0]},), "
                         f"got {getattr(lengths, 'dtype', type(lengths).__name__)} {tuple(getattr(lengths, 'shape', ()))}")
    if lengths.numel() and (lengths.min() < 1 or lengths.max() > input_ids.shape[1]):
        raise ValueError(f"lengths must lie in [1, {input_ids.shape[1]}], got min {lengths.min().item()}, "
                         f"max {lengths.max().item()}")
    return lengths.long()


def forward_padded(model: LanguageModel, input_ids: torch.Tensor, lengths: torch.Tensor):
    """Right-padded rows from the zero state: logits (batch, seq_len, vocab), zero beyond each
    row's length, and a :class:`GroupedState` holding each row's state after its last real token.
    ``model`` may also be a :class:`~longssm.models.Backbone` (hidden states instead of logits)."""
    lengths = check_lengths(lengths, input_ids)
    logits, rows, states = None, [], []
    for length in lengths.unique().tolist():
        idx = (lengths == length).nonzero()[:, 0]
        group_logits, state = model(input_ids[idx, :length])
        if logits is None:
            logits = group_logits.new_zeros(*input_ids.shape, group_logits.shape[-1])
        logits[idx, :length] = group_logits
        rows.append(idx)
        states.append(state)
    return logits, GroupedState(tuple(rows), tuple(states))


def step_grouped(model: LanguageModel, token_ids: torch.Tensor, state: GroupedState):
    """One token per row (batch,) through each group's state -> logits (batch, vocab), new state."""
    logits, states = None, []
    for idx, s in zip(state.rows, state.states):
        group_logits, s = model.step(token_ids[idx], s)
        if logits is None:
            logits = group_logits.new_empty(token_ids.shape[0], group_logits.shape[-1])
        logits[idx] = group_logits
        states.append(s)
    return logits, GroupedState(state.rows, tuple(states))


def from_mask(input_ids: torch.Tensor, attention_mask: torch.Tensor):
    """(right-aligned input_ids, lengths, left_padded) from a mask of ones on the real tokens,
    which must be contiguous in each row (right or left padding)."""
    mask = attention_mask.bool()
    if mask.shape != input_ids.shape:
        raise ValueError(f"attention_mask must have the shape of input_ids {tuple(input_ids.shape)}, "
                         f"got {tuple(mask.shape)}")
    lengths = mask.sum(1)
    L = input_ids.shape[1]
    pos = torch.arange(L, device=mask.device)
    right = torch.equal(mask, pos < lengths[:, None])
    left = torch.equal(mask, pos >= (L - lengths)[:, None])
    if not (right or left):
        raise ValueError("attention_mask must pad every row on one side (ones contiguous at the start "
                         "or at the end of each row)")
    if right:
        return input_ids, lengths, False
    shift = (pos[None, :] + (L - lengths)[:, None]) % L  # row b's real tokens moved to the start
    return input_ids.gather(1, shift), lengths, True


def to_left(values: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Right-aligned per-position values (batch, L, ...) moved to end at position L - 1 (the
    layout of left-padded inputs), zeros before."""
    L = values.shape[1]
    pos = torch.arange(L, device=values.device)
    src = (pos[None, :] - (L - lengths)[:, None]) % L
    moved = values.gather(1, src.view(*src.shape, *([1] * (values.dim() - 2))).expand_as(values))
    return moved * (pos[None, :] >= (L - lengths)[:, None]).view(*src.shape, *([1] * (values.dim() - 2)))
