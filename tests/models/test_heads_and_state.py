"""The sequence-classification head (padding never reaches a row's result), model-state
checkpoint fields, and mixer options validated by name."""

import pytest
import torch

from longssm.models import ModelConfig, SequenceClassifier
from longssm.models.state import carry, load_state_tensors, state_tensors
from conftest import SMALL_OPTS, assert_close, small_model


def classifier():
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=11, d_model=16, n_layer=3, mixers=("h3", "attention", "mamba"),
                      mixer_options={m: SMALL_OPTS[m] for m in ("h3", "attention", "mamba")})
    return SequenceClassifier(cfg, n_classes=3).double()


def test_padded_batch_equals_each_row_alone():
    model = classifier()
    lengths = [7, 4, 1]
    ids = torch.randint(0, 11, (3, 7))
    mask = torch.arange(7)[None] < torch.tensor(lengths)[:, None]
    padded = ids.masked_fill(~mask, 0)
    logits = model(padded, mask)
    assert logits.shape == (3, 3)
    for i, n in enumerate(lengths):
        alone = model(ids[i:i + 1, :n])
        assert_close(logits[i:i + 1], alone, 1e-12, f"row {i}")
    garbage = padded.masked_fill(~mask, 5)  # other padding ids change nothing
    assert_close(model(garbage, mask), logits, 1e-12, "padding ids")


def test_classifier_errors():
    model = classifier()
    ids = torch.randint(0, 11, (2, 5))
    with pytest.raises(ValueError, match="bool tensor of shape"):
        model(ids, torch.ones(2, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="at least one True"):
        model(ids, torch.zeros(2, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match="n_classes"):
        SequenceClassifier(model.config, 1)


def test_state_fields_round_trip():
    model = small_model("hybrid").double()
    _, state = model(torch.randint(0, 11, (2, 6)))
    carried = carry(state, model.carried)
    assert carried.layers[1] is None  # attention's KV cache is not carried
    fields = state_tensors(carried)
    assert set(fields) == {"layers.0.shift", "layers.0.ssm", "layers.2.conv", "layers.2.ssm"}
    template = carry(model.init_state(2, dtype=torch.float64), model.carried)
    back = load_state_tensors(template, fields)
    assert type(back) is type(carried) and back.layers[1] is None
    assert all(torch.equal(a, b) for a, b in zip(state_tensors(back).values(), fields.values()))
    with pytest.raises(ValueError, match="layers.0.ssm has shape"):
        load_state_tensors(template, {**fields, "layers.0.ssm": torch.zeros(1)})
    with pytest.raises(ValueError, match="do not exist"):
        load_state_tensors(template, {**fields, "layers.9.ssm": torch.zeros(1)})


@pytest.mark.parametrize("options, message", [
    ({"h3": {"d_sate": 4}}, "unknown key.*model.mixer_options.h3.d_sate"),
    ({"h3": {"d_state": "64"}}, "model.mixer_options.h3.d_state must be an integer"),
    ({"attention": {"n_heads": 2.5}}, "model.mixer_options.attention.n_heads must be an integer"),
])
def test_mixer_options_are_validated_by_name(options, message):
    with pytest.raises((TypeError, ValueError), match=message):
        ModelConfig(vocab_size=11, d_model=16, n_layer=1, mixers=("h3",), mixer_options=options)


def test_continuous_inputs_with_per_step_dt():
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=1, d_model=8, n_layer=2, mixers=("s5", "mamba"),
                      mixer_options={"s5": {"d_state": 4, "smr": True}, "mamba": {"d_state": 3}})
    model = SequenceClassifier(cfg, n_classes=4, d_input=2).double()
    x = torch.randn(3, 10, 2, dtype=torch.float64)
    dt = torch.rand(3, 10, dtype=torch.float64) + 0.5
    logits = model(x, dt=dt)
    assert logits.shape == (3, 4)
    assert not torch.allclose(logits, model(x))  # the steps matter
    assert_close(model(x, dt=torch.ones(3, 10, dtype=torch.float64)), model(x), 1e-12, "dt = 1 is the default step")
    with pytest.raises(ValueError, match=r"floats of shape \(batch, seq_len, 2\)"):
        model(torch.randint(0, 3, (3, 10)))
    with pytest.raises(ValueError, match=r"dt must be a floating tensor of shape \(3, 10\)"):
        model(x, dt=torch.ones(3, 9, dtype=torch.float64))
    lti = SequenceClassifier(ModelConfig(vocab_size=1, d_model=8, n_layer=1, mixers=("s4d",),
                                         mixer_options={"s4d": {"d_state": 4}}), 4, d_input=2)
    with pytest.raises(ValueError, match="S4D do not: give them the mean step with dt_scale"):
        lti(x.float(), dt=dt.float())
