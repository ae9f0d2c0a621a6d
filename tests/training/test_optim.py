import pytest
import torch

from longssm.layers import H3, SelectiveSSM, set_optim
from longssm.training.optim import param_groups


def test_groups_follow_hints():
    model = torch.nn.ModuleList([H3(16, d_state=8, ssm_lr=2e-3), SelectiveSSM(16, d_state=4)])
    groups = param_groups(model, lr=6e-4, weight_decay=0.1)
    by_id = {id(p): (g["lr"], g["weight_decay"]) for g in groups for p in g["params"]}
    h3, mamba = model
    assert by_id[id(h3.diag.log_dt)] == (2e-3, 0.0)
    assert by_id[id(h3.diag.A_im)] == (2e-3, 0.0)
    assert by_id[id(h3.shift.B)] == (2e-3, 0.0)
    assert by_id[id(h3.in_proj.weight)] == (6e-4, 0.1)
    assert by_id[id(h3.in_proj.bias)] == (6e-4, 0.0)
    assert by_id[id(mamba.core.A_log)] == (6e-4, 0.0)
    assert by_id[id(mamba.core.D)] == (6e-4, 0.0)
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
    torch.optim.AdamW(groups)  # accepted as is


def test_unknown_hint_is_an_error():
    with pytest.raises(ValueError, match="unknown optimiser hints"):
        set_optim(torch.nn.Parameter(torch.zeros(1)), momentum=0.9)


def test_embeddings_take_no_weight_decay():
    from longssm.models import LanguageModel, ModelConfig

    model = LanguageModel(ModelConfig(vocab_size=11, d_model=16, n_layer=1, mixers=("attention",),
                                      mixer_options={"attention": {"n_heads": 2}}, pos_embedding="learned",
                                      max_seq_len=8))
    by_id = {id(p): g["weight_decay"] for g in param_groups(model, 1e-3, 0.1) for p in g["params"]}
    assert by_id[id(model.backbone.embedding.weight)] == 0.0  # also the tied head
    assert by_id[id(model.backbone.pos_embedding.weight)] == 0.0
    assert by_id[id(model.backbone.blocks[0].mixer.qkv.weight)] == 0.1
