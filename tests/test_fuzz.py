"""Property tests (hypothesis): tokenizers round-trip any text, config parsers either build a
config or raise our error naming the key, and mixers given random shapes and dtypes either work or
raise our ValueError / TypeError."""

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from longssm.configs import apply_overrides
from longssm.data import BPETokenizer, ByteTokenizer
from longssm.layers import H3, S4D, S5, Attention, SelectiveSSM
from longssm.training.config import resolve

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
BPE = BPETokenizer.train(["the quick brown fox jumps over the lazy dog " * 20, "naïve café – 東京 🙂"], vocab_size=300)


@FAST
@given(st.text())
def test_tokenizers_round_trip_any_unicode(text):
    assert ByteTokenizer().decode(ByteTokenizer().encode(text)) == text
    assert BPE.decode(BPE.encode(text)) == text


KEYS = st.sampled_from(["train.lr", "train.steps", "train.state_init", "train.seq_len", "model.d_model",
                        "model.mixers", "data.tokenizer", "train.nonsense", "model.mixer_options.h3.d_state",
                        "model.mixer_options.h3.d_sate", "bogus.key"])
VALUES = st.sampled_from(["1", "0", "-3", "2.5", "true", '"zero"', "previous", '["h3"]', "[1, 2]", "{ a = 1 }", '""'])


@FAST
@given(st.lists(st.tuples(KEYS, VALUES), max_size=4))
def test_overrides_build_a_config_or_name_the_key(pairs):
    sets = [f"{k}={v}" for k, v in pairs]
    try:
        resolve(apply_overrides({}, sets))
    except (ValueError, TypeError) as e:
        message = str(e)
        assert any(k.split(".")[-1] in message or k.split(".")[0] in message for k, _ in pairs), message


MIXERS = [lambda d: H3(d, d_state=4, shift_state=3), lambda d: S4D(d, d_state=4), lambda d: S5(d, d_state=3),
          lambda d: SelectiveSSM(d, d_state=3), lambda d: Attention(d, n_heads=1)]


@FAST
@given(st.sampled_from(range(len(MIXERS))), st.integers(0, 3), st.integers(0, 9), st.integers(1, 5),
       st.sampled_from([torch.float32, torch.float64, torch.int64, torch.bfloat16]), st.integers(0, 2))
def test_mixers_work_or_raise_our_errors(which, batch, length, width, dtype, extra_dims):
    mixer = MIXERS[which](4)
    shape = (batch, length, width) if extra_dims == 0 else (batch,) * extra_dims + (length, width)
    x = torch.zeros(shape, dtype=dtype)
    try:
        y, _ = mixer.to(torch.float64 if dtype == torch.float64 else torch.float32)(x)
    except (ValueError, TypeError) as e:
        assert "x" in str(e) or "u" in str(e) or "dtype" in str(e) or "shape" in str(e)
        return
    assert y.shape == x.shape
