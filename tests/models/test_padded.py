"""Padded batches: rows of different lengths get exactly what they get alone (logits, final state,
greedy continuation), for SSM, attention and hybrid models, in float64 (1e-10)."""

import pytest
import torch

from conftest import assert_close
from longssm.layers.state import tensors
from longssm.models import LanguageModel, generate, model_config
from longssm.models.padded import forward_padded, from_mask, to_left

ARCHS = [("h3", (1,)), ("mamba", ()), ("s4d", ()), ("attention", ())]


def _model(arch, attention_at):
    torch.manual_seed(0)
    return LanguageModel(model_config(arch, vocab_size=64, d_model=16, n_layer=2, attention_at=attention_at,
                                      attention={"n_heads": 2})).double().eval()


@pytest.mark.parametrize("arch,attention_at", ARCHS, ids=[a for a, _ in ARCHS])
def test_each_row_gets_what_it_gets_alone(arch, attention_at):
    model = _model(arch, attention_at)
    ids = torch.randint(0, 64, (4, 12), generator=torch.Generator().manual_seed(1))
    lengths = torch.tensor([12, 5, 9, 5])
    with torch.no_grad():
        logits, grouped = forward_padded(model, ids, lengths)
        out = generate(model, ids, 6, temperature=0.0, return_scores=True, lengths=lengths)
        for b, n in enumerate(lengths.tolist()):
            alone, state = model(ids[b:b + 1, :n])
            assert_close(logits[b, :n], alone[0], 1e-10, f"row {b} logits")
            assert not logits[b, n:].any()
            g = next(i for i, rows in enumerate(grouped.rows) if b in rows.tolist())
            j = grouped.rows[g].tolist().index(b)
            for got, want in zip(tensors(grouped.states[g]), tensors(state)):
                assert_close(got[j:j + 1] if got.shape[0] == len(grouped.rows[g]) else got, want, 1e-10, "state")
            cont = generate(model, ids[b:b + 1, :n], 6, temperature=0.0, return_scores=True)
            assert torch.equal(out.tokens[b], cont.tokens[0])
            assert_close(out.scores[b], cont.scores[0], 1e-10, f"row {b} scores")


def test_masks_on_either_side():
    ids = torch.arange(12).view(3, 4)
    right = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0]])
    got, lengths, left = from_mask(ids, right)
    assert torch.equal(got, ids) and lengths.tolist() == [4, 2, 1] and not left
    got, lengths, left = from_mask(ids, right.flip(1))
    assert left and lengths.tolist() == [4, 2, 1]
    assert got[1, :2].tolist() == [6, 7] and got[2, :1].tolist() == [11]
    back = to_left(got.unsqueeze(-1).double(), lengths)[..., 0]
    assert back.tolist() == [[0, 1, 2, 3], [0, 0, 6, 7], [0, 0, 0, 11]]
    with pytest.raises(ValueError, match="pad every row on one side"):
        from_mask(ids, torch.tensor([[1, 0, 1, 1]] * 3))
    with pytest.raises(ValueError, match=r"lengths must lie in \[1, 4\]"):
        forward_padded(_model("mamba", ()), ids, torch.tensor([4, 0, 2]))


def test_step_head_copy_follows_weight_changes():
    """The decode step's cached (d_model, vocab) head weight: the forward's logits, and never stale
    after an in-place update or a load."""
    model = _model("mamba", ())
    ids = torch.randint(0, 64, (2, 6), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        for change in (None, lambda: model.head.weight.mul_(1.5),
                       lambda: model.load_state_dict({**model.state_dict(), "head.weight": torch.randn(64, 16).double()})):
            if change:
                change()
            logits, state = model(ids[:, :-1])
            step_logits, _ = model.step(ids[:, -1], state)
            assert_close(step_logits, model(ids)[0][:, -1], 1e-12, "step head")
