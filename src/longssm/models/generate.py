"""Generation: the prompt runs through the parallel ``forward`` once, then one recurrent ``step``
per new token (constant cost per token for SSM layers; attention reads its KV cache)."""

from __future__ import annotations

from typing import Callable, NamedTuple, Sequence

import torch

from longssm.models.model import LanguageModel
from longssm.models.padded import forward_padded, step_grouped


class Generation(NamedTuple):
    tokens: torch.Tensor  # (batch, n_new): after a row's stop token, the stop token repeats
    scores: torch.Tensor | None  # (batch, n_new, vocab): logits each new token was drawn from
    finished: torch.Tensor  # (batch,) bool: the row emitted a stop token


def sample_next(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
                top_p: float | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """Token ids (batch,) from logits (batch, vocab): greedy when temperature == 0, else softmax
    sampling at ``temperature`` restricted to the top_k tokens and/or the top_p probability mass."""
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if temperature == 0:
        return logits.argmax(-1)
    logits = logits.float() / temperature
    if top_k is not None:
        if top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {top_k}")
        kth = torch.topk(logits, min(top_k, logits.shape[-1]), dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None:
        if not 0 < top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {top_p}")
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        probs = sorted_logits.softmax(-1)
        drop = probs.cumsum(-1) - probs > top_p  # keep the smallest prefix with mass >= top_p
        logits = logits.masked_fill(drop.scatter(-1, order, drop), float("-inf"))
    return torch.multinomial(logits.softmax(-1), 1, generator=generator)[:, 0]


@torch.no_grad()
def generate(model: LanguageModel, input_ids: torch.Tensor, max_new_tokens: int, *,
             temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
             stop_tokens: Sequence[int] = (), generator: torch.Generator | None = None,
             return_scores: bool = False, on_token: Callable[[torch.Tensor], bool | None] | None = None,
             lengths: torch.Tensor | None = None) -> Generation:
    """Continue each prompt row of ``input_ids`` (batch, prompt_len) by up to max_new_tokens.

    ``lengths`` (batch,): prompts of different lengths, right-padded; each row continues from its
    own last token with the state it has alone (rows grouped by length, ``longssm.models.padded``).

    Stops early once every row has emitted one of ``stop_tokens``; ``on_token`` receives each new
    (batch,) tensor of ids as it is drawn (for streaming output) and stops generation by returning
    True (e.g. when the decoded text reaches a stop string).
    """
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    if lengths is None:
        logits, state = model(input_ids)
        next_logits, step = logits[:, -1], model.step
    else:
        logits, state = forward_padded(model, input_ids, lengths)
        next_logits = logits[torch.arange(input_ids.shape[0], device=logits.device), lengths.long() - 1]
        step = lambda tok, s: step_grouped(model, tok, s)  # noqa: E731
    stops = torch.tensor(list(stop_tokens), dtype=torch.long, device=input_ids.device)
    finished = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
    last_stop = torch.zeros_like(input_ids[:, 0])
    tokens, scores = [], []
    for i in range(max_new_tokens):
        if return_scores:
            scores.append(next_logits)
        tok = sample_next(next_logits, temperature, top_k, top_p, generator)
        tok = torch.where(finished, last_stop, tok)
        is_stop = torch.isin(tok, stops) & ~finished
        last_stop = torch.where(is_stop, tok, last_stop)
        finished |= is_stop
        tokens.append(tok)
        wants_stop = on_token is not None and bool(on_token(tok))
        if wants_stop or bool(finished.all()) or i == max_new_tokens - 1:
            break
        next_logits, state = step(tok, state)
    return Generation(torch.stack(tokens, 1), torch.stack(scores, 1) if return_scores else None, finished)
