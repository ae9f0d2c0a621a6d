import math

import numpy as np
import pytest
import torch

from longssm.evaluation.perplexity import evaluate, unigram_loss
from conftest import small_model


@pytest.mark.parametrize("kind", ["h3", "mamba", "hybrid"])
def test_streaming_equals_one_long_window(kind):
    model = small_model(kind).double()
    tokens = np.random.default_rng(0).integers(0, 11, 2 * 48 + 1)
    stream = evaluate(model, tokens, 8, "streaming", batch=2, context=48)  # a context holding the whole text
    whole = evaluate(model, tokens, 48, "zero", batch=2)
    assert stream["tokens"] == whole["tokens"] == 96
    assert stream["loss"] == pytest.approx(whole["loss"], abs=1e-10)
    short = evaluate(model, tokens, 8, "zero", batch=2)
    assert short["loss"] != pytest.approx(whole["loss"], abs=1e-6)  # zero state forgets context


def test_streaming_attention_keeps_a_bounded_context(monkeypatch):
    """Attention's KV cache never holds more than ``context`` tokens from earlier windows, so cost
    and memory per window do not grow with the text; SSM layers still carry everything."""
    from longssm.layers.attention import Attention

    model = small_model("hybrid").double()
    tokens = np.random.default_rng(0).integers(0, 11, 2 * 64 + 1)
    seen = []
    forward = Attention.forward

    def spy(self, x, state=None, **kw):
        seen.append(0 if state is None else state.k.shape[2])
        return forward(self, x, state, **kw)

    monkeypatch.setattr(Attention, "forward", spy)
    bounded = evaluate(model, tokens, 8, "streaming", batch=2)
    assert max(seen) == 8 and len(seen) == 8
    seen.clear()
    wider = evaluate(model, tokens, 8, "streaming", batch=2, context=24)
    assert max(seen) == 24
    assert bounded["loss"] != pytest.approx(wider["loss"], abs=1e-9)  # the context does reach attention


def test_loss_over_chunks_of_logits_equals_the_whole(monkeypatch):
    import torch
    import torch.nn.functional as F

    from longssm.evaluation import perplexity

    model = small_model("hybrid").double()
    tokens = np.random.default_rng(1).integers(0, 11, 2 * 32 + 1)
    win = torch.from_numpy(np.stack([tokens[:33], tokens[32:65]]))
    logits, _ = model(win[:, :-1])
    whole = F.cross_entropy(logits.flatten(0, 1), win[:, 1:].flatten(), reduction="sum").item()
    monkeypatch.setattr(perplexity, "LOGITS_PER_CHUNK", 5 * 11)  # 5 tokens of 11 logits per chunk
    assert perplexity._nll(model, win, None, return_state=False)[0] == pytest.approx(whole, abs=1e-10)


def test_eval_errors_and_perplexity():
    model = small_model("h3")
    with pytest.raises(ValueError, match="mode must be one of"):
        evaluate(model, np.zeros(100, dtype=np.int64), 8, "sliding")
    with pytest.raises(ValueError, match="too few"):
        evaluate(model, np.zeros(10, dtype=np.int64), 8, batch=2)
    grad = []  # evaluation records no autograd graph
    model.backbone.register_forward_hook(lambda *_: grad.append(torch.is_grad_enabled()))
    r = evaluate(model, np.zeros(100, dtype=np.int64), 8, batch=2)
    assert r["perplexity"] == pytest.approx(math.exp(r["loss"]))
    assert grad and not any(grad)


def test_unigram_loss():
    train = np.array([0, 0, 0, 1])
    # add-one counts: 4, 2, 1 -> p(0) = 4/7
    assert unigram_loss(train, np.array([0]), 3) == pytest.approx(-math.log(4 / 7))


def test_cut_streams_never_cross_documents_and_alternate():
    from longssm.evaluation.perplexity import cut_streams

    docs = [np.arange(0, 35), np.arange(100, 118), np.arange(200, 205)]
    s = cut_streams(docs, 8)
    # doc 0 gives 4 pieces of 9 tokens (34 // 8), doc 1 gives 2, doc 2 none: round-robin order
    assert s.shape == (6, 9)
    assert [row[0] for row in s] == [0, 100, 8, 108, 16, 24]
    assert all(np.all(np.diff(row) == 1) for row in s)  # consecutive, inside one document
    assert cut_streams(docs, 8, max_streams=3).shape == (3, 9)
    with pytest.raises(ValueError, match="no document"):
        cut_streams(docs, 64)


@pytest.mark.slow
def test_evaluate_streams_modes_and_orders():
    from longssm.evaluation.perplexity import evaluate_streams

    model = small_model("h3").double()
    streams = np.random.default_rng(1).integers(0, 11, (3, 33))
    whole = evaluate_streams(model, streams, 32, "zero")
    consecutive = [evaluate_streams(model, streams, L, "streaming")["loss"] for L in (1, 4, 8, 32)]
    # exact state passing: the same predictions from the same states at every window length
    assert consecutive == pytest.approx([whole["loss"]] * 4, abs=1e-10)
    # zero-state windows from hand-cut windows
    wins = np.concatenate([streams[:, i * 8: i * 8 + 9] for i in range(4)])
    import torch
    import torch.nn.functional as F

    with torch.no_grad():
        w = torch.from_numpy(wins)
        ref = F.cross_entropy(model(w[:, :-1])[0].flatten(0, 1), w[:, 1:].flatten()).item()
    assert evaluate_streams(model, streams, 8, "zero", tokens_per_forward=16)["loss"] == pytest.approx(ref, abs=1e-10)
    assert evaluate_streams(model, streams, 8, "zero", "shuffled")["loss"] == pytest.approx(ref, abs=1e-10)
    shuffled = evaluate_streams(model, streams, 8, "streaming", "shuffled", seed=3)["loss"]
    assert shuffled != pytest.approx(consecutive[0], abs=1e-6)  # the carried state now comes from elsewhere
    assert evaluate_streams(model, streams, 32, "streaming", "shuffled")["loss"] == pytest.approx(whole["loss"], abs=1e-12)
    with pytest.raises(ValueError, match="must divide"):
        evaluate_streams(model, streams, 5)
    with pytest.raises(ValueError, match="order"):
        evaluate_streams(model, streams, 8, "streaming", "reversed")
