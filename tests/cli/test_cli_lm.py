"""The language-model commands end to end, and 2-process DDP against a single process."""

import json
import os
import subprocess
import sys

import pytest

from longssm.cli.main import main
from conftest import corpus

MODEL = ['--set', 'model.n_layer=2', '--set', 'model.d_model=16', '--set', 'model.mixers=["h3", "attention"]',
         '--set', 'model.mixer_options={h3 = {d_state = 8, shift_state = 4}, attention = {n_heads = 2}}']


def run_args(tmp_path, out, steps=4, extra=()):
    d = corpus(tmp_path)
    return ["train", "--no-progress", *MODEL, "--set", f'data.train=["{d}/doc*.txt"]',
            "--set", f'data.valid=["{d}/valid.txt"]', "--set", f"train.steps={steps}", "--set", "train.batch_size=4",
            "--set", "train.seq_len=16", "--set", "train.eval_every=0", "--set", "train.eval_batches=1",
            "--set", "train.log_every=1", "--set", "train.warmup_steps=1", "--set", f'train.out_dir="{out}"', *extra]


@pytest.mark.slow
def test_train_eval_generate_info(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(run_args(tmp_path, out)) == 0
    assert main(["eval", str(out), "--lengths", "8", "16", "--batch", "2", "--out", str(tmp_path / "ev.json")]) == 0
    results = json.loads((tmp_path / "ev.json").read_text())
    assert {(r["mode"], r["eval_len"]) for r in results} == {("zero", 8), ("zero", 16), ("streaming", 8), ("streaming", 16)}
    assert main(["generate", str(out), "--prompt", "Document", "--max-new-tokens", "20", "--temperature", "0"]) == 0
    assert main(["info", str(out)]) == 0
    text = capsys.readouterr().out
    assert "streaming L=8" in text and "step 4" in text and "Document" in text


def test_bad_inputs_are_clear_errors(tmp_path, capsys):
    assert main(["train", "--set", "train.stpes=3"]) == 2
    assert "unknown key(s) train.stpes" in capsys.readouterr().err
    assert main(["train", "--preset", "tiny-h4"]) == 2
    assert "unknown preset 'tiny-h4'" in capsys.readouterr().err
    assert main(["eval", str(tmp_path)]) == 2
    assert "no checkpoint here" in capsys.readouterr().err
    (tmp_path / "empty.txt").write_text("")
    assert main(["data", "prepare", str(tmp_path / "empty.txt"), "--out", str(tmp_path / "s")]) == 2
    assert "corpus is empty" in capsys.readouterr().err
    assert main(["train", "--config", str(tmp_path / "missing.toml")]) == 2
    assert "config file not found" in capsys.readouterr().err


def test_presets_and_data_prepare(tmp_path, capsys):
    assert main(["presets"]) == 0
    out = capsys.readouterr().out
    assert "hybrid-h3-125m" in out and "tiny-mamba" in out
    (tmp_path / "a.txt").write_bytes(b"hello \xff world " * 50)
    assert main(["data", "prepare", str(tmp_path / "a.txt"), "--out", str(tmp_path / "s"), "--tokenizer", "bpe",
                 "--bpe-vocab-size", "280", "--encoding-errors", "replace"]) == 0
    assert "50 invalid utf-8 sequences replaced" in capsys.readouterr().out
    assert (tmp_path / "s" / "tokenizer.json").exists()


def _losses(path):
    return [r["loss"] for r in map(json.loads, open(path).read().splitlines()) if "loss" in r]


@pytest.mark.slow
@pytest.mark.parametrize("state_init", ["zero", "previous"])
def test_two_processes_match_one(tmp_path, state_init):
    one, two = tmp_path / "one", tmp_path / "two"
    extra = ("--set", f'train.state_init="{state_init}"')
    assert main(run_args(tmp_path, one, steps=3, extra=extra)) == 0
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "longssm.cli.main", *run_args(tmp_path, two, steps=3, extra=extra)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    a, b = _losses(one / "metrics.jsonl"), _losses(two / "metrics.jsonl")
    assert len(a) == len(b) == 3
    assert max(abs(x - y) for x, y in zip(a, b)) <= 1e-5


def test_example_run_file_resolves():
    from pathlib import Path

    from longssm.configs import load_toml
    from longssm.training.config import resolve

    cfg = resolve(load_toml(str(Path(__file__).parents[2] / "configs" / "tiny-hybrid.toml")))
    assert cfg.model_config(256).mixers == ("h3", "attention", "h3", "h3")
    assert cfg.train.steps == 1000 and cfg.data.train == ("embedded",)


def test_lazy_top_level_exports():
    import longssm

    assert callable(longssm.generate) and longssm.get_preset("tiny-h3").n_layer == 4
    with pytest.raises(AttributeError):
        longssm.nothing


def test_train_help_lists_every_key_with_its_doc(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    assert "train.state_init = 'zero'" in out and "LongSSM" in out
    assert "data.tokenizer = 'byte'" in out and "model.mixers" in out and "model.vocab_size" not in out
