"""longssm models inside transformers: forward, generate with the carried state, save/load
(in-process registration and trust_remote_code in a fresh Python), tokenizers, refusals."""

import json
import subprocess
import sys

import pytest
import torch

import transformers  # the [hf] extra, installed by make test: a missing one fails here

from longssm.cli.main import main
from longssm.data import BPETokenizer, ByteTokenizer
from longssm.integrations.hf import LongssmForCausalLM, hf_tokenizer, register, to_hf
from longssm.models import LanguageModel, generate, model_config
from longssm.models.checkpoint import save_model_only


def _model(arch="h3", **kw):
    torch.manual_seed(0)
    return LanguageModel(model_config(arch, vocab_size=256, d_model=32, n_layer=2, **kw)).eval()


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hfmodel")
    m = _model(attention_at=(1,))
    save_model_only(tmp / "ckpt", m, {"model_config": m.config.to_dict(), "tokenizer": ByteTokenizer().to_json()})
    assert main(["export", "hf", str(tmp / "ckpt"), str(tmp / "hf")]) == 0
    return m, tmp / "hf"


@pytest.mark.parametrize("arch,kw", [("h3", {"attention_at": (1,)}), ("mamba", {}), ("s4d", {})])
def test_generate_carries_the_state_and_equals_ours(arch, kw):
    m = _model(arch, **kw)
    w = to_hf(m)
    prompt = torch.randint(0, 256, (2, 9), generator=torch.Generator().manual_seed(1))
    calls = {"forward": [], "step": 0}
    fwd, step = m.forward, m.step
    m.forward = lambda ids, *a, **k: calls["forward"].append(ids.shape[1]) or fwd(ids, *a, **k)
    m.step = lambda *a, **k: calls.__setitem__("step", calls["step"] + 1) or step(*a, **k)
    out = w.generate(prompt, max_new_tokens=12, do_sample=False, return_dict_in_generate=True, output_logits=True)
    assert calls == {"forward": [9], "step": 11}  # the prompt once, then one recurrent step per token
    m.forward, m.step = fwd, step
    ours = generate(m, prompt, 12, temperature=0.0, return_scores=True)
    assert torch.equal(out.sequences[:, 9:], ours.tokens)
    # every step's logits (a random model's greedy path may repeat one token; its logits still move)
    assert len(out.logits) == ours.scores.shape[1] == 12
    for theirs, mine in zip(out.logits, ours.scores.unbind(1)):
        torch.testing.assert_close(theirs, mine, rtol=0, atol=1e-5)


def test_forward_loss():
    m = _model()
    w = to_hf(m)
    ids = torch.randint(0, 256, (2, 16), generator=torch.Generator().manual_seed(2))
    out = w(ids, labels=ids)
    logits, _ = m(ids)
    assert torch.equal(out.logits, logits)
    expected = torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), ids[:, 1:].flatten())
    torch.testing.assert_close(out.loss, expected)


@pytest.mark.parametrize("arch,kw", [("h3", {"attention_at": (1,)}), ("mamba", {})])
def test_padded_batches_give_each_row_what_it_gets_alone(arch, kw):
    m = _model(arch, **kw)
    w = to_hf(m)
    rows = [torch.randint(0, 256, (n,), generator=torch.Generator().manual_seed(n)) for n in (7, 3, 5)]
    L = max(len(r) for r in rows)
    left = torch.zeros(3, L, dtype=torch.long)
    mask = torch.zeros(3, L, dtype=torch.long)
    for b, r in enumerate(rows):
        left[b, L - len(r):], mask[b, L - len(r):] = r, 1
    out = w.generate(left, attention_mask=mask, max_new_tokens=6, do_sample=False,
                     return_dict_in_generate=True, output_logits=True)
    right, right_mask = left.clone(), mask.clone()
    for b, r in enumerate(rows):
        right[b], right_mask[b] = 0, 0
        right[b, :len(r)], right_mask[b, :len(r)] = r, 1
    with torch.no_grad():
        right_logits = w(right, attention_mask=right_mask).logits
    for b, r in enumerate(rows):
        alone = generate(m, r[None], 6, temperature=0.0, return_scores=True)
        assert torch.equal(out.sequences[b, L:], alone.tokens[0])
        for step, logits in enumerate(out.logits):
            torch.testing.assert_close(logits[b], alone.scores[0, step], rtol=0, atol=1e-5)
        with torch.no_grad():
            torch.testing.assert_close(right_logits[b, :len(r)], m(r[None])[0][0], rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="pad on the left"):
        w.generate(right, attention_mask=right_mask, max_new_tokens=2, do_sample=False)


def test_save_and_load_in_process_with_register(exported, tmp_path):
    m, folder = exported
    register()
    loaded = transformers.AutoModelForCausalLM.from_pretrained(folder)
    assert isinstance(loaded, LongssmForCausalLM)
    ids = torch.randint(0, 256, (1, 20), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert torch.equal(loaded(ids).logits, m(ids)[0])
    assert loaded.lm.head.weight.data_ptr() == loaded.lm.backbone.embedding.weight.data_ptr()  # still tied
    loaded.save_pretrained(tmp_path / "again")
    again = LongssmForCausalLM.from_pretrained(tmp_path / "again")
    with torch.no_grad():
        assert torch.equal(again(ids).logits, m(ids)[0])


def test_trust_remote_code_loads_in_a_fresh_python(exported, tmp_path):
    m, folder = exported
    ids = torch.randint(0, 256, (1, 20), generator=torch.Generator().manual_seed(4))
    code = ("import json, sys, torch\n"
            "from transformers import AutoModelForCausalLM, AutoTokenizer\n"
            "assert 'longssm' not in sys.modules\n"
            f"m = AutoModelForCausalLM.from_pretrained({str(folder)!r}, trust_remote_code=True)\n"
            f"tok = AutoTokenizer.from_pretrained({str(folder)!r}, trust_remote_code=True)\n"
            f"ids = torch.tensor({ids.tolist()})\n"
            "print('RESULT', json.dumps({'logits': m(ids).logits[0, -1].tolist(), 'ids': tok('héllo')['input_ids'],"
            " 'class': type(m).__name__}))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    got = json.loads(out.stdout.split("RESULT ")[-1])
    assert got["class"] == "LongssmForCausalLM" and got["ids"] == list("héllo".encode())
    with torch.no_grad():
        torch.testing.assert_close(torch.tensor(got["logits"]), m(ids)[0][0, -1], rtol=0, atol=1e-6)


@pytest.mark.parametrize("tok", [ByteTokenizer(), BPETokenizer.train(["some text to learn, some more text"] * 10,
                                                                     vocab_size=280)],
                         ids=["byte", "bpe"])
def test_tokenizer_encodes_and_decodes_as_ours(tok):
    fast = hf_tokenizer(tok)
    for text in ["some text", "héllo wörld\n\ttabs  and  spaces 😀", "\r\n\x00 edge"]:
        ids = fast(text)["input_ids"]
        assert ids == list(tok.encode(text)) and fast.decode(ids) == tok.decode(ids)


def test_without_the_extra_the_package_works_and_the_error_names_the_install():
    code = ("import sys; sys.modules['transformers'] = None\n"
            "import torch\n"
            "from longssm.models import LanguageModel, model_config\n"
            "LanguageModel(model_config('h3', vocab_size=16, d_model=8, n_layer=1))(torch.zeros(1, 3, dtype=torch.long))\n"
            "try:\n    import longssm.integrations.hf\nexcept ImportError as e:\n    print(e)\n"
            "sys.modules['lm_eval'] = None\n"
            "try:\n    import longssm.integrations.lm_eval\nexcept ImportError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "pip install 'longssm[hf]'" in out.stdout and "pip install 'longssm[eval]'" in out.stdout


def test_bench_hf_measures_both_and_they_agree(tmp_path):
    out = tmp_path / "hf.json"
    assert main(["bench", "hf", "--quick", "--contenders", "tiny-mamba", "--out", str(out)]) == 0
    (row,) = json.loads(out.read_text())["rows"]
    assert row["same_tokens"] and row["longssm_tokens_per_s"] > 0 and row["transformers_tokens_per_s"] > 0
    assert row["overhead"] == pytest.approx(row["longssm_tokens_per_s"] / row["transformers_tokens_per_s"] - 1)
