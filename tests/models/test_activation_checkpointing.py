"""Activation checkpointing recomputes blocks exactly: the same loss and gradients (parameters and
a carried state), with dropout on, for every kind of mixer, in float64."""

import pytest
import torch

from conftest import assert_close
from longssm.layers.state import map_tensors, tensors
from longssm.models import LanguageModel, model_config, set_activation_checkpointing


@pytest.mark.parametrize("arch,attention_at", [("h3", (1,)), ("mamba", ()), ("s4d", ())])
def test_checkpointed_blocks_give_the_same_gradients(arch, attention_at):
    torch.manual_seed(0)
    model = LanguageModel(model_config(arch, vocab_size=50, d_model=16, n_layer=2, attention_at=attention_at,
                                       dropout=0.1)).to(torch.float64).train()
    ids = torch.randint(0, 50, (2, 24), generator=torch.Generator().manual_seed(1))
    _, state = model(ids[:, :8])
    state0 = type(state)(tuple(None if s is None or arch == "h3" and i == 1 else s for i, s in enumerate(state.layers)), 0)
    results = []
    for on in (False, True):
        set_activation_checkpointing(model, on)
        s = map_tensors(lambda t: t.detach().requires_grad_(), state0)
        leaves = tensors(s)
        torch.manual_seed(7)  # the same dropout masks in both runs
        logits, _ = model(ids[:, 8:], s)
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), ids[:, 8:].roll(-1, 1).flatten())
        grads = torch.autograd.grad(loss, list(model.parameters()) + leaves, allow_unused=True)
        results.append((loss.detach(), grads))
    assert_close(results[1][0], results[0][0], 1e-12, "loss")
    for g1, g0 in zip(results[1][1], results[0][1]):
        if g0 is not None:
            assert_close(g1, g0, 1e-12, "grad")
