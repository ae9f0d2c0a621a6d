"""Every command given a bad value exits with status 2 and one line naming the argument, never a
traceback; eval, generate and info report what is true of the checkpoint."""

import tempfile
from pathlib import Path

import pytest

from longssm.cli.main import main
from conftest import corpus


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cli")
    d = corpus(tmp)
    out = tmp / "run"
    assert main(["train", "--no-progress", "--set", "model.n_layer=1", "--set", "model.d_model=16",
                 "--set", 'model.mixers=["h3"]', "--set", "model.mixer_options.h3.d_state=4",
                 "--set", "model.mixer_options.h3.shift_state=4", "--set", f'data.train=["{d}/doc*.txt"]',
                 "--set", f'data.valid=["{d}/valid.txt"]', "--set", "data.tokenizer=bpe",
                 "--set", "data.bpe_vocab_size=300", "--set", "train.steps=2", "--set", "train.batch_size=2",
                 "--set", "train.seq_len=16", "--set", "train.eval_batches=1", "--set", f'train.out_dir="{out}"']) == 0
    return out, d


def bad_calls(out, d, tmp):
    existing = tmp / "exists.json"
    existing.write_text("{}")
    latin1, binary = tmp / "latin1.txt", tmp / "blob.bin"
    latin1.write_bytes("Noël à la plage, déjà vu.\n".encode("latin-1") * 10)
    binary.write_bytes(bytes(range(256)) * 4)
    return [
        ["train", "--set", "train.steps=0"],
        ["train", "--set", "train.device=cuda", "--set", f'train.out_dir="{tmp / "x"}"'],
        ["train", "--set", "train.lr=fast"],
        ["train", "--config", str(tmp / "missing.toml")],
        ["eval", str(out), "--lengths", "0"],
        ["eval", str(out), "--batch", "-1"],
        ["eval", str(out), "--context", "0"],
        ["eval", str(out), "--out", str(existing)],
        ["eval", str(tmp / "nowhere")],
        ["generate", str(out), "--prompt", ""],
        ["generate", str(out), "--prompt", "a", "--max-new-tokens", "0"],
        ["generate", str(out), "--prompt", "a", "--temperature", "-1"],
        ["generate", str(out), "--prompt", "a", "--top-p", "2"],
        ["data", "prepare", str(tmp / "missing.txt"), "--out", str(tmp / "shard")],
        ["data", "prepare", str(d / "valid.txt"), "--out", str(tmp / "shard"), "--encoding", "klingon"],
        ["data", "prepare", str(latin1), "--out", str(tmp / "shard"), "--tokenizer", "bpe"],
        ["data", "prepare", str(binary), "--out", str(tmp / "shard")],
        ["eval", str(out), "--data", str(latin1)],
        ["train", "--set", "data.encoding=klingon"],
        ["info", str(tmp / "nowhere")],
        ["demo", "--minutes", "0"],
        ["synthetics", "--set", "synthetics.lr=x"],
        ["synthetics", "--jobs", "0"],
        ["synthetics", "--model", "nope", "h3"],
        ["synthetics", "--d-model", "32", "0"],
        ["synthetics", "--task", "mqar", "--seq-len", "64", "--pairs", "1", "2"],
        ["synthetics", "--out", str(existing)],
        ["experiment", "length-extension", "--train-lens", "7", "--train", str(d), "--valid", str(d)],
        ["experiment", "smr", "--set", "smr.steps=0"],
        ["bench", "kernels", "--repeats", "0"],
        ["bench", "kernels", "--contenders", "warp-drive"],
    ]


def test_every_command_with_a_bad_value_exits_2_without_a_traceback(run, tmp_path, capsys):
    out, d = run
    capsys.readouterr()
    for argv in bad_calls(out, d, tmp_path):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("longssm: error: ") and err.count("\n") == 1 and "Traceback" not in err, (argv, err)


def test_info_eval_and_generate_tell_the_truth(run, tmp_path, capsys):
    out, d = run
    capsys.readouterr()
    assert main(["info", str(out)]) == 0
    info = capsys.readouterr().out
    assert "tokenizer bpe (vocab 300)" in info and "architecture 1 layers x d_model 16, mixers h3" in info
    before = set(Path(tempfile.gettempdir()).glob("longssm-eval-*"))
    assert main(["eval", str(out), "--data", str(d / "valid.txt"), "--modes", "zero", "--lengths", "8"]) == 0
    assert set(Path(tempfile.gettempdir()).glob("longssm-eval-*")) == before  # no temporary folder left behind
    text_line = capsys.readouterr().out
    shard = tmp_path / "shard"
    assert main(["data", "prepare", str(d / "valid.txt"), "--out", str(shard), "--tokenizer", "bpe",
                 "--bpe-vocab-size", "300"]) == 0
    capsys.readouterr()
    assert main(["eval", str(out), "--data", str(shard), "--modes", "zero", "--lengths", "8"]) == 2
    assert "was tokenised with tokenizer" in capsys.readouterr().err  # another BPE: refused, not misread
    assert "loss" in text_line
    (tmp_path / "latin1.txt").write_bytes((d / "valid.txt").read_text().replace("e", "é").encode("latin-1"))
    assert main(["eval", str(out), "--data", str(tmp_path / "latin1.txt"), "--encoding", "latin-1",
                 "--modes", "zero", "--lengths", "8"]) == 0
    assert "loss" in capsys.readouterr().out


def test_generate_stops_at_text(run, capsys):
    out, _ = run
    capsys.readouterr()
    assert main(["generate", str(out), "--prompt", "the", "--max-new-tokens", "200", "--temperature", "1.0",
                 "--stop", "e", "--seed", "1"]) == 0
    continuation = capsys.readouterr().out[len("the"):].rstrip("\n")
    assert continuation.endswith("e") and continuation.count("e") == 1  # stops at the first 'e', whatever the tokens


def test_backend_option_changes_the_kernels_not_the_output(run, capsys, monkeypatch):
    import longssm.kernels.native_linear as nl
    from longssm.cli.main import build_parser
    from longssm.kernels.backend import BACKENDS

    out, _ = run
    for backend in BACKENDS:  # every backend is a choice, nothing else is
        assert build_parser().parse_args(["generate", "x", "--prompt", "a", "--backend", backend]).backend == backend
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args(["generate", "x", "--prompt", "a", "--backend", "cuda"])
    assert e.value.code == 2 and "invalid choice: 'cuda'" in capsys.readouterr().err
    texts, calls = {}, []
    monkeypatch.setattr(nl, "entry", lambda *a, _e=nl.entry: calls.append(a) or _e(*a))
    for backend in ("auto", "native"):
        capsys.readouterr()
        assert main(["generate", str(out), "--prompt", "the", "--max-new-tokens", "12", "--temperature", "0",
                     "--backend", backend]) == 0
        texts[backend] = capsys.readouterr().out
        assert main(["eval", str(out), "--modes", "zero", "--lengths", "8", "--backend", backend]) == 0
        texts[backend + " eval"] = capsys.readouterr().out
        if backend == "auto":
            assert calls == []
    assert calls  # the native run decoded through the C++ kernel
    assert texts["auto"] == texts["native"]
    assert texts["auto eval"] == texts["native eval"]
