import math

import numpy as np
import pytest

from longssm.evaluation.perplexity import evaluate, unigram_loss
from test_models import small_model


@pytest.mark.parametrize("kind", ["h3", "mamba", "hybrid"])
def test_streaming_equals_one_long_window(kind):
    model = small_model(kind).double()
    tokens = np.random.default_rng(0).integers(0, 11, 2 * 48 + 1)
    stream = evaluate(model, tokens, 8, "streaming", batch=2)
    whole = evaluate(model, tokens, 48, "zero", batch=2)
    assert stream["tokens"] == whole["tokens"] == 96
    assert stream["loss"] == pytest.approx(whole["loss"], abs=1e-10)
    short = evaluate(model, tokens, 8, "zero", batch=2)
    assert short["loss"] != pytest.approx(whole["loss"], abs=1e-6)  # zero state forgets context


def test_eval_errors_and_perplexity():
    model = small_model("h3")
    with pytest.raises(ValueError, match="mode must be one of"):
        evaluate(model, np.zeros(100, dtype=np.int64), 8, "sliding")
    with pytest.raises(ValueError, match="too few"):
        evaluate(model, np.zeros(10, dtype=np.int64), 8, batch=2)
    r = evaluate(model, np.zeros(100, dtype=np.int64), 8, batch=2)
    assert r["perplexity"] == pytest.approx(math.exp(r["loss"]))


def test_unigram_loss():
    train = np.array([0, 0, 0, 1])
    # add-one counts: 4, 2, 1 -> p(0) = 4/7
    assert unigram_loss(train, np.array([0]), 3) == pytest.approx(-math.log(4 / 7))
