"""longssm checkpoints in EleutherAI's lm-evaluation-harness: the model ``longssm``.

Importing this module registers it; then ``lm_eval.simple_evaluate(model="longssm",
model_args="checkpoint=runs/demo", tasks=[...])`` works, and so does the harness's own command
line through ``python -m longssm.integrations.lm_eval`` (the same arguments as ``lm_eval``:
the harness has no plug-in discovery for models, so its plain ``lm_eval`` command does not know
``longssm``). ``model_args``: ``checkpoint`` (required), ``batch_size`` (8), ``window`` (2048,
tokens per forward when reading long documents), ``dtype`` (float32).

* ``loglikelihood``: context and continuation encoded as the harness does (the pair encoded
  whole, the context's tokens split off; trailing spaces of the context move to the
  continuation); requests of different lengths share batches through
  :mod:`longssm.models.padded`, so no state sees padding.
* ``loglikelihood_rolling``: each document whole, through the carried state
  (:func:`longssm.evaluation.perplexity.document_nll`): no window limit for any layer. Our
  tokenizers have no beginning-of-text token, so the first token of a document is not scored
  (the harness's models score it after an end-of-text token).
* ``generate_until``: greedy (or sampled when asked), batched, cut at the first stop string.

An empty context (the harness sends one for unconditional scoring) is replaced by a newline.
"""

from __future__ import annotations

try:
    from lm_eval.api.model import LM
    from lm_eval.api.registry import register_model
except ImportError as e:  # pragma: no cover - exercised by a test without the extra in a subprocess
    raise ImportError(f"longssm.integrations.lm_eval needs lm-evaluation-harness ({e}): "
                      f"pip install 'longssm[eval]'") from None

import torch
import torch.nn.functional as F
from tqdm import tqdm

from longssm.evaluation.perplexity import document_nll
from longssm.models import generate
from longssm.models.checkpoint import load_model
from longssm.models.padded import forward_padded

EMPTY_CONTEXT = "\n"


@register_model("longssm")
class LongssmLM(LM):
    def __init__(self, checkpoint: str, batch_size: int | str = 8, window: int = 2048, dtype: str = "float32",
                 device: str | None = None, **_ignored):
        super().__init__()
        if device is None or (str(device).startswith("cuda") and not torch.cuda.is_available()):
            device = "cuda" if torch.cuda.is_available() else "cpu"  # the harness's CLI asks for cuda by default
        model, self.tok, _, _ = load_model(checkpoint)
        if not hasattr(torch, str(dtype)) or not isinstance(getattr(torch, str(dtype)), torch.dtype):
            raise ValueError(f"dtype must name a torch dtype (float32, float64, bfloat16), got {dtype!r}")
        self.model = model.to(device=device, dtype=getattr(torch, str(dtype))).eval()
        self._device = torch.device(device)
        self.batch_size = 8 if str(batch_size).startswith("auto") else int(batch_size)
        self.window = int(window)

    def _encode(self, text: str) -> list[int]:
        return list(self.tok.encode(text))

    def _pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        context = context or EMPTY_CONTEXT
        spaces = len(context) - len(context.rstrip())
        if spaces:
            context, continuation = context[:-spaces], context[-spaces:] + continuation
        whole, ctx = self._encode(context + continuation), self._encode(context)
        return ctx, whole[len(ctx):]

    @torch.no_grad()
    def score(self, pairs: list[tuple[list[int], list[int]]]) -> list[tuple[float, bool]]:
        """(log P(continuation | context), whether greedy decoding yields it) for one batch of
        token pairs, rows of different lengths."""
        rows = [ctx + cont[:-1] for ctx, cont in pairs]
        ids, lengths = _right_padded(rows)
        # hidden states, and the head only where a continuation is scored: never batch x length x vocab
        hidden, _ = forward_padded(self.model.backbone, ids.to(self._device), lengths.to(self._device))
        results = []
        for b, (ctx, cont) in enumerate(pairs):
            scores = self.model.head(hidden[b, len(ctx) - 1: len(ctx) - 1 + len(cont)])
            lp = F.log_softmax(scores.to(torch.promote_types(scores.dtype, torch.float32)), -1)  # bf16 up, fp64 kept
            target = torch.tensor(cont, device=lp.device)
            results.append((lp.gather(1, target[:, None]).sum().item(), bool((lp.argmax(-1) == target).all())))
        return results

    def loglikelihood(self, requests, disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        pairs = [self._pair(*req.args) for req in requests]
        out = []
        for i in tqdm(range(0, len(pairs), self.batch_size), disable=disable_tqdm, desc="loglikelihood"):
            out += self.score(pairs[i: i + self.batch_size])
        return out

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        out = []
        for req in tqdm(requests, disable=disable_tqdm, desc="loglikelihood_rolling"):
            ids = torch.tensor(self._encode(req.args[0]), device=self._device)
            out.append(-document_nll(self.model, ids, self.window) if ids.numel() > 1 else 0.0)
        return out

    @torch.no_grad()
    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        out = []
        for i in tqdm(range(0, len(requests), self.batch_size), disable=disable_tqdm, desc="generate_until"):
            chunk = requests[i: i + self.batch_size]
            kwargs = chunk[0].args[1]  # the harness batches requests of one task: one set of kwargs
            until = kwargs.get("until") or []
            until = [until] if isinstance(until, str) else list(until)
            ids, lengths = _right_padded([self._encode(req.args[0] or EMPTY_CONTEXT) for req in chunk])
            texts = [""] * len(chunk)
            new: list[list[int]] = [[] for _ in chunk]

            def on_token(tok: torch.Tensor) -> bool:
                for b, t in enumerate(tok.tolist()):
                    new[b].append(t)
                    texts[b] = self.tok.decode(new[b])
                return all(any(u in t for u in until) for t in texts) if until else False

            sample = bool(kwargs.get("do_sample", False)) and float(kwargs.get("temperature", 1.0)) > 0
            generate(self.model, ids.to(self._device), int(kwargs.get("max_gen_toks", 256)),
                     temperature=float(kwargs.get("temperature", 1.0)) if sample else 0.0,
                     lengths=lengths.to(self._device), on_token=on_token)
            for text in texts:
                cut = min([text.index(u) for u in until if u in text], default=len(text))
                out.append(text[:cut])
        return out


def _right_padded(rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Token rows as one right-padded (batch, longest) tensor and their lengths."""
    lengths = torch.tensor([len(r) for r in rows])
    ids = torch.zeros(len(rows), int(lengths.max()), dtype=torch.long)
    for b, r in enumerate(rows):
        ids[b, :len(r)] = torch.tensor(r)
    return ids, lengths


def main() -> None:
    """``python -m longssm.integrations.lm_eval``: the harness's command line with ``longssm`` known."""
    from lm_eval.__main__ import cli_evaluate

    cli_evaluate()


if __name__ == "__main__":
    main()
