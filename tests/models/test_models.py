import pytest
import torch

from longssm.models import (
    NOMINAL, LanguageModel, ModelConfig, ModelState, count_parameters, generate, get_preset, reset_rows,
)
from longssm.models.generate import sample_next
from conftest import KINDS, SMALL_OPTS, assert_close, small_model

@pytest.mark.parametrize("name", sorted(NOMINAL))
def test_paper_presets_within_3_percent(name):
    with torch.device("meta"):
        model = LanguageModel(get_preset(name))
    n = count_parameters(model)
    assert abs(n - NOMINAL[name]) / NOMINAL[name] < 0.03, f"{name}: {n / 1e6:.1f}M"


def test_hybrid_attention_layers():
    assert [i for i, m in enumerate(get_preset("hybrid-h3-125m").mixers) if m == "attention"] == [1, 8]
    assert [i for i, m in enumerate(get_preset("hybrid-h3-2.7b").mixers) if m == "attention"] == [10, 21]


def test_unknown_preset_and_config_errors():
    with pytest.raises(ValueError, match="unknown preset 'h4'.*tiny-hybrid"):
        get_preset("h4")
    with pytest.raises(ValueError, match="one mixer per layer"):
        ModelConfig(n_layer=2, mixers=("h3",))
    with pytest.raises(ValueError, match="unknown mixer 'lstm'"):
        ModelConfig(n_layer=1, mixers=("lstm",))
    with pytest.raises(ValueError, match="unknown model config keys \\['d_modle'\\]"):
        ModelConfig.from_dict({"d_modle": 3})
    with pytest.raises(ValueError, match="positive integer"):
        ModelConfig(d_model=0)
    cfg = get_preset("tiny-hybrid")
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize("backend", ["auto", "native"])
@pytest.mark.parametrize("kind", sorted(KINDS))
def test_forward_equals_steps_and_chunks(kind, backend):
    """The state contract in float64; with the native backend the selective scan, its decoding step
    and the decoding projections are the C++ kernels."""
    model = small_model(kind, backend=backend).double()
    ids = torch.randint(0, 11, (2, 9))
    logits, state = model(ids)
    s = model.init_state(2, dtype=torch.float64)
    steps = []
    for t in range(9):
        out, s = model.step(ids[:, t], s)
        steps.append(out)
    assert_close(torch.stack(steps, 1), logits, 1e-10, "steps")
    a, _ = model(ids[:, :4])
    b, _ = model(ids[:, 4:], model(ids[:, :4])[1])
    assert_close(torch.cat([a, b], 1), logits, 1e-10, "chunks")


@pytest.mark.parametrize("backend", ["auto", "native"])
@pytest.mark.parametrize("kind", sorted(KINDS))
def test_generation_is_teacher_forced_forward(kind, backend):
    """With the native backend, decoding's projections and head run through the C++
    matrix-vector kernel and the prompt's through F.linear."""
    model = small_model(kind, backend=backend).eval()
    prompt = torch.randint(0, 11, (3, 5))
    out = generate(model, prompt, 12, temperature=0.0, return_scores=True)
    full, _ = model(torch.cat([prompt, out.tokens], 1))
    assert_close(out.scores, full[:, 4:-1], 1e-4, "generate vs forward")
    assert torch.equal(out.tokens, full[:, 4:-1].argmax(-1))


def test_generation_with_prompt_longer_than_window():
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=11, d_model=16, n_layer=2, mixers=("attention", "h3"),
                      mixer_options={"attention": {"n_heads": 2, "window": 3}, "h3": SMALL_OPTS["h3"]})
    model = LanguageModel(cfg).eval()
    prompt = torch.randint(0, 11, (2, 10))
    out = generate(model, prompt, 6, temperature=0.0, return_scores=True)
    full, _ = model(torch.cat([prompt, out.tokens], 1))
    assert_close(out.scores, full[:, 9:-1], 1e-4, "windowed generation")


def test_sampling_and_stop_tokens():
    model = small_model("h3").eval()
    g = torch.Generator().manual_seed(1)
    out = generate(model, torch.zeros(4, 2, dtype=torch.long), 30, temperature=1.0, top_k=3, top_p=0.9,
                   stop_tokens=[0, 1], generator=g)
    for row, done in zip(out.tokens, out.finished):
        if done:
            first = next(i for i, t in enumerate(row.tolist()) if t in (0, 1))
            assert (row[first:] == row[first]).all()
    logits = torch.tensor([[0.0, 5.0, 1.0, -1.0]])
    assert sample_next(logits, temperature=0.0).item() == 1
    assert sample_next(logits, top_k=1).item() == 1
    assert sample_next(logits, top_p=0.5).item() == 1
    with pytest.raises(ValueError, match="top_p"):
        sample_next(logits, top_p=1.5)


def test_learned_positions_and_bad_ids():
    model = small_model("attention", pos_embedding="learned", max_seq_len=8)
    model(torch.randint(0, 11, (1, 8)))
    with pytest.raises(ValueError, match="beyond max_seq_len=8"):
        model(torch.randint(0, 11, (1, 9)))
    with pytest.raises(ValueError, match=r"outside \[0, 11\)"):
        model(torch.tensor([[3, 11]]))
    with pytest.raises(TypeError, match="integer"):
        model(torch.zeros(1, 3))
    with pytest.raises(ValueError, match="seq_len >= 1"):
        model(torch.zeros(1, 0, dtype=torch.long))
    with pytest.raises(TypeError, match="ModelState"):
        model(torch.zeros(1, 2, dtype=torch.long), state=(None,))


def test_reset_rows_zeroes_only_selected_rows():
    model = small_model("h3").double()
    _, state = model(torch.randint(0, 11, (3, 6)))
    state = reset_rows(state, torch.tensor([True, False, True]))
    fresh = model.init_state(3, dtype=torch.float64)
    _, s1 = model(torch.randint(0, 11, (3, 4)), state)
    for layer in state.layers:
        for t, z in zip(layer, fresh.layers[0]):
            assert t[0].abs().max() == 0 and t[2].abs().max() == 0 and t[1].abs().max() > 0
    assert isinstance(s1, ModelState)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_forward_without_state(kind):
    model = small_model(kind).double()
    ids = torch.randint(0, 11, (2, 9))
    logits, state = model(ids)
    only, none = model(ids, return_state=False)
    assert none is None and torch.equal(only, logits)
    cont, _ = model(ids, state, return_state=False)
    assert torch.equal(cont, model(ids, state)[0])
