"""The lm-evaluation-harness model ``longssm``, through the harness's own ``simple_evaluate`` on
tasks written here as local JSON-lines files (no hub access): multiple choice, rolling
log-likelihood and generation, each checked against longssm's own computation of the same thing."""

import json
import os
import subprocess
import sys

os.environ.setdefault("HF_DATASETS_OFFLINE", "1")  # local files only, before datasets is imported

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

import lm_eval  # noqa: E402  (the [eval] extra, installed by make test: a missing one fails here)
from lm_eval.tasks import TaskManager  # noqa: E402

import longssm.integrations.lm_eval  # noqa: E402,F401  (registers the model "longssm")
from longssm.data import ByteTokenizer  # noqa: E402
from longssm.evaluation.perplexity import evaluate  # noqa: E402
from longssm.models import LanguageModel, generate, model_config  # noqa: E402
from longssm.models.checkpoint import save_model_only  # noqa: E402

EVAL_LEN = 16


def _task(folder, name, rows, **spec):
    data = folder / f"{name}.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    lines = [f"task: {name}", "dataset_path: json", "dataset_kwargs:", "  data_files:", f"    test: {data}",
             "test_split: test"] + [f"{k}: {json.dumps(v)}" for k, v in spec.items()]
    (folder / f"{name}.yaml").write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("lmeval")
    torch.manual_seed(0)
    model = LanguageModel(model_config("h3", vocab_size=256, d_model=32, n_layer=2)).eval()
    with torch.no_grad():
        model.head.weight.mul_(30)  # sharper than GPT-2 init, so the choices' scores differ clearly
    save_model_only(tmp / "ckpt", model, {"model_config": model.config.to_dict(), "tokenizer": ByteTokenizer().to_json()})
    tasks = tmp / "tasks"
    tasks.mkdir()
    rng = np.random.default_rng(0)
    words = ["state", "space", "model", "hippo", "long", "memory", "token", "scan"]
    mc = [{"question": f"Q{i}: the {words[i % 8]} is", "choices": [f" {w}" for w in rng.permutation(words)[:4]],
           "answer": int(rng.integers(4))} for i in range(10)]
    _task(tasks, "longssm_mc", mc, output_type="multiple_choice", doc_to_text="{{question}}",
          doc_to_choice="{{choices}}", doc_to_target="{{answer}}", metric_list=[{"metric": "acc"}])
    docs = [{"text": "".join(rng.choice(list("abcdefgh ")) for _ in range(1 + EVAL_LEN * k))} for k in (2, 5, 9)]
    _task(tasks, "longssm_rolling", docs, output_type="loglikelihood_rolling", doc_to_text="",
          doc_to_target="{{text}}", metric_list=[{"metric": "word_perplexity"}, {"metric": "byte_perplexity"},
                                                 {"metric": "bits_per_byte"}])
    gen = [{"prompt": f"say {w}:", "answer": w} for w in words[:5]]
    _task(tasks, "longssm_gen", gen, output_type="generate_until", doc_to_text="{{prompt}}",
          doc_to_target="{{answer}}", generation_kwargs={"until": ["\n", "."], "max_gen_toks": 12, "do_sample": False},
          metric_list=[{"metric": "exact_match"}])
    out = lm_eval.simple_evaluate(model="longssm", model_args=f"checkpoint={tmp / 'ckpt'},batch_size=3,dtype=float64",
                                  tasks=["longssm_mc", "longssm_rolling", "longssm_gen"],
                                  task_manager=TaskManager(include_path=str(tasks)), log_samples=True)
    return model.to(torch.float64), mc, docs, gen, out, tmp  # float64 on both sides


def _logprob(model, context, continuation):
    ids = torch.tensor([list((context + continuation).encode())])
    n = len(context.encode())
    with torch.no_grad():
        lp = torch.log_softmax(model(ids[:, :-1])[0][0], -1)
    return lp[n - 1:].gather(1, ids[0, n:, None]).sum().item()


def test_multiple_choice_equals_a_direct_scoring_loop(setup):
    model, mc, _, _, out, _ = setup
    samples = sorted(out["samples"]["longssm_mc"], key=lambda s: s["doc_id"])
    right = 0
    for doc, sample in zip(mc, samples):
        args = [tuple(a) for a in sample["arguments"]]  # the (context, continuation) pairs the harness asked
        assert [c for _, c in args] == [" " + c for c in doc["choices"]]  # the harness's target delimiter
        direct = [_logprob(model, ctx, cont) for ctx, cont in args]
        got = [r[0][0] for r in sample["resps"]]
        np.testing.assert_allclose(got, direct, rtol=1e-10)
        right += int(np.argmax(direct)) == doc["answer"]
    assert out["results"]["longssm_mc"]["acc,none"] == pytest.approx(right / len(mc))
    assert len({int(np.argmax([r[0][0] for r in s["resps"]])) for s in samples}) > 1  # not one constant pick


def test_rolling_loglikelihood_equals_our_streaming_evaluation(setup):
    model, _, docs, _, out, _ = setup
    samples = sorted(out["samples"]["longssm_rolling"], key=lambda s: s["doc_id"])
    for doc, sample in zip(docs, samples):
        tokens = np.frombuffer(doc["text"].encode(), dtype=np.uint8).astype(np.int64)
        ours = evaluate(model, tokens, EVAL_LEN, "streaming", batch=1)
        assert ours["tokens"] == tokens.size - 1  # every token after the first, as the harness got
        assert sample["resps"][0][0] == pytest.approx(-ours["loss"] * ours["tokens"], rel=1e-10)
    assert out["results"]["longssm_rolling"]["byte_perplexity,none"] > 1


def test_generate_until_equals_greedy_generation_cut_at_the_stop_strings(setup):
    model, _, _, gen, out, _ = setup
    samples = sorted(out["samples"]["longssm_gen"], key=lambda s: s["doc_id"])
    for doc, sample in zip(gen, samples):
        ids = torch.tensor([list(doc["prompt"].encode())])
        tokens = generate(model, ids, 12, temperature=0.0).tokens[0].tolist()
        text = bytes(tokens).decode("utf-8", errors="replace")
        cut = min([text.index(u) for u in ("\n", ".") if u in text], default=len(text))
        assert sample["resps"][0][0] == text[:cut]


def test_the_harness_command_line_knows_longssm(setup):
    *_, tmp = setup
    run = subprocess.run([sys.executable, "-m", "longssm.integrations.lm_eval", "--model", "longssm", "--model_args",
                          f"checkpoint={tmp / 'ckpt'}", "--tasks", "longssm_mc", "--include_path", str(tmp / "tasks"),
                          "--limit", "4", "--output_path", str(tmp / "cli")],
                         capture_output=True, text=True, env={**os.environ, "HF_DATASETS_OFFLINE": "1"})
    assert run.returncode == 0, run.stderr[-2000:]
    assert "longssm_mc" in run.stdout and "acc" in run.stdout
