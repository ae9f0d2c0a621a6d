"""transformers' MambaForCausalLM folders in and out: logits, greedy generations, refusals.

transformers is an optional extra (installed by `make test`); its Mamba runs its reference PyTorch
path on CPU. Its RMSNorm computes in float32 even for float64 models, so logits of the same
float64 weights agree to float32 rounding: 2e-6 of the largest logit, stated per test.
"""

import json

import pytest
import torch

import transformers  # noqa: E402  (the [hf] extra, installed by make test: a missing one fails here)

from conftest import assert_close  # noqa: E402
from longssm.cli.main import main  # noqa: E402
from longssm.data import BPETokenizer  # noqa: E402
from longssm.integrations.hf_mamba import export_hf_mamba, import_hf_mamba, mamba_from_hf  # noqa: E402
from longssm.models import LanguageModel, generate, model_config  # noqa: E402
from longssm.models.checkpoint import load_model  # noqa: E402

FLOAT32_ROUNDING = 2e-6


@pytest.fixture(scope="module")
def hf_folder(tmp_path_factory):
    """A random 3-layer MambaForCausalLM (norms and D perturbed so every parameter matters), saved
    as transformers saves it, with a BPE tokenizer.json beside it as hub folders have."""
    torch.manual_seed(0)
    cfg = transformers.MambaConfig(vocab_size=300, hidden_size=32, state_size=8, num_hidden_layers=3,
                                   expand=2, conv_kernel=4, time_step_rank=4)
    hf = transformers.MambaForCausalLM(cfg).eval()
    with torch.no_grad():
        for name, p in hf.named_parameters():
            if name.endswith(".D") or "norm" in name:
                p.add_(torch.randn_like(p) * 0.1)
    folder = tmp_path_factory.mktemp("hf") / "mamba"
    hf.save_pretrained(folder)
    BPETokenizer.train(["the quick brown fox jumps over the lazy dog"] * 20, vocab_size=290).save(
        str(folder / "tokenizer.json"))
    return folder


def _hf(folder, dtype=torch.float64):
    return transformers.MambaForCausalLM.from_pretrained(folder).to(dtype).eval()


def test_logits_match_transformers_in_float64(hf_folder):
    ours, cfg, tok = mamba_from_hf(hf_folder, dtype=torch.float64)
    assert cfg.n_layer == 3 and cfg.mixer_options["mamba"]["dt_rank"] == 4 and tok is not None
    ids = torch.randint(0, 300, (2, 50), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = _hf(hf_folder)(ids).logits
        logits, _ = ours(ids)
    assert_close(logits, expected, FLOAT32_ROUNDING * expected.abs().max().item(), "logits")


def test_greedy_generation_matches_token_for_token(hf_folder):
    ours, _, _ = mamba_from_hf(hf_folder, dtype=torch.float64)
    prompt = torch.randint(0, 300, (1, 12), generator=torch.Generator().manual_seed(2))
    theirs = _hf(hf_folder).generate(prompt, max_new_tokens=24, do_sample=False, attention_mask=torch.ones_like(prompt))
    mine = generate(ours, prompt, 24, temperature=0.0).tokens
    assert torch.equal(mine, theirs[:, 12:])


def test_cli_import_then_export_round_trips(hf_folder, tmp_path, capsys):
    ckpt, back = tmp_path / "ckpt", tmp_path / "back"
    assert main(["import", "hf-mamba", str(hf_folder), str(ckpt)]) == 0
    model, tok, record, _ = load_model(ckpt)
    assert record["source"]["format"] == "transformers MambaForCausalLM" and 256 < tok.vocab_size <= 290
    assert main(["import", "hf-mamba", str(hf_folder), str(ckpt)]) == 2  # never over an existing folder
    assert "exists" in capsys.readouterr().err
    assert main(["info", str(ckpt)]) == 0 and "weights only: converted from transformers" in capsys.readouterr().out
    for argv in (["train", "--resume", str(ckpt)], ["eval", str(ckpt)]):  # no run recorded: clear refusals
        assert main(argv) == 2 and "holds weights only" in capsys.readouterr().err
    assert main(["export", "hf-mamba", str(ckpt), str(back)]) == 0
    assert (back / "tokenizer.json").exists()
    ids = torch.randint(0, 300, (1, 30), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        a, b = _hf(hf_folder, torch.float32)(ids).logits, _hf(back, torch.float32)(ids).logits
    assert torch.equal(a, b)  # the same weights, bit for bit


def test_refusals_name_the_reason(hf_folder, tmp_path):
    bad = tmp_path / "biased"
    bad.mkdir()
    (bad / "config.json").write_text(json.dumps({**json.loads((hf_folder / "config.json").read_text()),
                                                 "use_bias": True}))
    with pytest.raises(ValueError, match="use_bias = True is not supported"):
        mamba_from_hf(bad)
    with pytest.raises(FileNotFoundError, match="no config.json"):
        mamba_from_hf(tmp_path)
    h3 = LanguageModel(model_config("h3", vocab_size=64, d_model=16, n_layer=2))
    with pytest.raises(ValueError, match="not expressible as a transformers MambaForCausalLM: mixers"):
        export_hf_mamba(h3, tmp_path / "h3")
    small = tmp_path / "small"
    transformers.MambaForCausalLM(transformers.MambaConfig(vocab_size=200, hidden_size=16, num_hidden_layers=1)) \
        .save_pretrained(small)
    with pytest.raises(ValueError, match="byte tokenizer needs a vocabulary of 256"):
        import_hf_mamba(small, tmp_path / "out")
    wrong = json.loads((small / "config.json").read_text())
    (small / "config.json").write_text(json.dumps({**wrong, "num_hidden_layers": 2}))
    with pytest.raises(ValueError, match="weights do not match the config"):
        mamba_from_hf(small)
