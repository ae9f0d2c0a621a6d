"""Runs that lose nothing: a run folder is never written over by accident, resume needs only the
run folder and refuses changes that would make it another run, metrics list every step once after
a resume, and SIGINT / SIGTERM stop with a checkpoint."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from longssm.cli.main import main
from longssm.models import checkpoint as ckpt
from longssm.training.loop import train
from conftest import corpus
from test_training import config, losses

QUIET = dict(progress=False, log=lambda *_: None)


def steps_logged(out):
    return [r["step"] for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if "loss" in r]


def test_a_run_folder_is_never_written_over_by_accident(tmp_path):
    out = tmp_path / "run"
    train(config(tmp_path, out, steps=2), **QUIET)
    with pytest.raises(ValueError, match="already holds a run .*pass --resume to continue it or --overwrite"):
        train(config(tmp_path, out, steps=2), **QUIET)
    train(config(tmp_path, out, steps=3), overwrite=True, **QUIET)
    assert steps_logged(out) == [1, 2, 3]  # the first run's lines are gone, not mixed in
    with pytest.raises(ValueError, match="holds no checkpoint to continue from"):
        train(config(tmp_path, tmp_path / "empty", steps=2), resume=True, **QUIET)


def test_metrics_are_cut_back_to_the_checkpoint_a_run_resumes_from(tmp_path):
    straight, crashed = tmp_path / "straight", tmp_path / "crashed"
    train(config(tmp_path, straight), **QUIET)
    train(config(tmp_path, crashed), **QUIET)
    # as if the process died after logging steps 4-6 but before the step-6 checkpoint
    root = crashed / "checkpoints"
    for p in root.glob("step_0000006"):
        import shutil

        shutil.rmtree(p)
    (root / "latest").write_text("step_0000003\n")
    train(config(tmp_path, crashed), resume=True, **QUIET)
    assert steps_logged(crashed) == [1, 2, 3, 4, 5, 6]
    assert losses(crashed) == pytest.approx(losses(straight), abs=1e-6)


def test_resume_from_the_run_folder_alone(tmp_path, capsys):
    cfg = tmp_path / "run.toml"
    d = corpus(tmp_path)
    out = tmp_path / "run"
    cfg.write_text(f"""[model]
n_layer = 1
d_model = 16
mixers = ["h3"]
mixer_options = {{ h3 = {{ d_state = 4, shift_state = 4 }} }}
[data]
train = ["{d}/doc*.txt"]
valid = ["{d}/valid.txt"]
[train]
steps = 2
batch_size = 2
seq_len = 16
eval_every = 0
eval_batches = 1
log_every = 1
out_dir = "{out}"
""")
    assert main(["train", "--config", str(cfg), "--no-progress"]) == 0
    os.chdir(tmp_path / "corpus")  # another folder: the record's paths are absolute
    assert main(["train", "--resume", str(out), "--set", "train.steps=4", "--no-progress"]) == 0
    assert steps_logged(out) == [1, 2, 3, 4]
    capsys.readouterr()
    assert main(["train", "--resume", str(out), "--set", "train.lr=0.1", "--set", "train.seq_len=32"]) == 2
    err = capsys.readouterr().err
    assert "train.lr, train.seq_len differ from the recorded run" in err and "Traceback" not in err
    assert ckpt.read_record(ckpt.find_checkpoint(out))["step"] == 4


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_training_with_a_checkpoint(tmp_path, sig):
    d = corpus(tmp_path)
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "longssm.cli.main", "train", "--no-progress",
           "--set", "model.n_layer=1", "--set", "model.d_model=16", "--set", 'model.mixers=["h3"]',
           "--set", "model.mixer_options.h3.d_state=4", "--set", "model.mixer_options.h3.shift_state=4",
           "--set", f'data.train=["{d}/doc*.txt"]', "--set", f'data.valid=["{d}/valid.txt"]',
           "--set", "train.steps=100000", "--set", "train.batch_size=2", "--set", "train.seq_len=16",
           "--set", "train.eval_every=0", "--set", "train.log_every=1", "--set", "train.checkpoint_every=100000",
           "--set", f'train.out_dir="{out}"']
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (out / "metrics.jsonl").exists() or len(steps_logged(out)) < 3:
        assert proc.poll() is None and time.time() < deadline, proc.stderr.read() if proc.poll() is not None else "slow"
        time.sleep(0.2)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert f"{sig.name}: saved a checkpoint at step" in err and "Traceback" not in err
    path = ckpt.find_checkpoint(out)
    record = ckpt.read_record(path)
    ckpt.verify(path, record)
    assert record["step"] == steps_logged(out)[-1] and record["metrics"]["step"] == record["step"]


def test_data_prepare_never_overwrites_a_folder_by_accident(tmp_path, capsys):
    d = corpus(tmp_path)
    out = tmp_path / "shard"
    assert main(["data", "prepare", str(d / "doc0.txt"), "--out", str(out), "--tokenizer", "bpe",
                 "--bpe-vocab-size", "300"]) == 0
    assert (out / "tokenizer.json").exists()
    capsys.readouterr()
    assert main(["data", "prepare", str(d / "doc1.txt"), "--out", str(out)]) == 2
    assert "is not empty" in capsys.readouterr().err
    assert main(["data", "prepare", str(d / "doc1.txt"), "--out", str(out), "--overwrite"]) == 0
    assert not (out / "tokenizer.json").exists()  # the byte shard leaves no stale BPE tokenizer behind
    (out / "notes.txt").write_text("mine")
    assert main(["data", "prepare", str(d / "doc1.txt"), "--out", str(out), "--overwrite"]) == 2
    assert "not a shard's (notes.txt)" in capsys.readouterr().err and (out / "notes.txt").exists()


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_a_corrupted_newest_checkpoint_falls_back_to_the_newest_verified(tmp_path, damage):
    straight, run = tmp_path / "straight", tmp_path / "run"
    train(config(tmp_path, straight, checkpoint_every=1), **QUIET)
    train(config(tmp_path, run, checkpoint_every=1, steps=4), **QUIET)
    weights = run / "checkpoints" / "step_0000004" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    if damage == "flip":
        data[len(data) // 2] ^= 0xFF
    else:
        data = data[: len(data) // 2]
    weights.write_bytes(bytes(data))
    said = []
    train(config(tmp_path, run, checkpoint_every=1), resume=True, progress=False, log=said.append)
    assert any("skipping checkpoint step_0000004" in m for m in said)
    assert any("resuming from step_0000003, the newest checkpoint that verifies" in m for m in said)
    assert steps_logged(run) == [1, 2, 3, 4, 5, 6]
    assert losses(run) == pytest.approx(losses(straight), abs=1e-6)


@pytest.mark.parametrize("where", ["no space", "read-only"])
def test_a_failed_checkpoint_write_keeps_the_previous_one_and_stops_clearly(tmp_path, monkeypatch, where):
    """We run as root in CI, so permissions cannot make a folder read-only: the failure is injected
    where the OS would raise it (ENOSPC while writing a file, EROFS when creating the folder)."""
    import errno
    import tempfile

    run = tmp_path / "run"
    train(config(tmp_path, run, checkpoint_every=2, steps=2), **QUIET)
    if where == "no space":
        real_save = torch.save

        def full_disk(obj, f, *a, **kw):
            real_save(obj, f, *a, **kw)  # a partial file is left, as a full disk leaves one
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        monkeypatch.setattr(torch, "save", full_disk)
    else:
        def read_only(*a, **kw):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS))
        monkeypatch.setattr(tempfile, "mkdtemp", read_only)
    with pytest.raises(OSError, match=r"could not write the checkpoint of step 4 .*\((No space left on device|"
                                      r"Read-only file system)\); the previous checkpoint .*step_0000002 is kept"):
        train(config(tmp_path, run, checkpoint_every=2, steps=4), resume=True, **QUIET)
    monkeypatch.undo()
    root = run / "checkpoints"
    assert (root / "latest").read_text().strip() == "step_0000002"
    ckpt.verify(root / "step_0000002", ckpt.read_record(root / "step_0000002"))  # raises if damaged
    assert not list(root.glob(".tmp*")) and not (root / "step_0000004").exists()
    train(config(tmp_path, run, checkpoint_every=2, steps=4), resume=True, **QUIET)  # space back: it goes on
    assert (root / "latest").read_text().strip() == "step_0000004"


def test_shards_of_different_tokenizers_and_corrupted_manifests_are_named(tmp_path, capsys):
    from longssm.data import Shard

    d = corpus(tmp_path)
    bpe, byte = tmp_path / "bpe", tmp_path / "byte"
    assert main(["data", "prepare", str(d / "doc0.txt"), "--out", str(bpe), "--tokenizer", "bpe",
                 "--bpe-vocab-size", "300"]) == 0
    assert main(["data", "prepare", str(d / "valid.txt"), "--out", str(byte)]) == 0
    capsys.readouterr()
    assert main(["train", "--set", f'data.train=["{bpe}"]', "--set", f'data.valid=["{byte}"]',
                 "--set", f'train.out_dir="{tmp_path / "run"}"', "--set", "train.steps=1"]) == 2
    assert "the shards were tokenised differently" in capsys.readouterr().err
    (byte / "manifest.json").write_text('{"tokens": 12')
    with pytest.raises(ValueError, match="manifest.json: corrupted"):
        Shard.load(byte)


def test_the_default_run_folder_is_new_and_named(tmp_path, monkeypatch):
    import dataclasses

    monkeypatch.chdir(tmp_path)
    run = config(tmp_path, tmp_path / "unused", steps=1)
    run = dataclasses.replace(run, train=dataclasses.replace(run.train, out_dir=""))
    said = []
    train(run, progress=False, log=said.append)
    folders = list((tmp_path / "runs").iterdir())
    assert len(folders) == 1 and folders[0].name.startswith("run-")
    assert (folders[0] / "checkpoints" / "latest").exists()
    assert any(f"run folder {folders[0]}" in m for m in said)  # the path is printed


def test_a_run_folder_being_trained_is_refused_to_a_second_process(tmp_path):
    """The same command in two terminals: the second is refused at once, naming the first's pid,
    and the first run's files are untouched; once the first process is gone the folder is free."""
    out = tmp_path / "run"
    train(config(tmp_path, out, steps=2), **QUIET)
    before = (out / "metrics.jsonl").read_text()
    holder = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, os, sys, time\n"
        f"fd = os.open({str(out / '.lock')!r}, os.O_RDWR | os.O_CREAT)\n"
        "fcntl.flock(fd, fcntl.LOCK_EX)\nos.ftruncate(fd, 0)\nos.write(fd, b'pid 4242 on nodeA')\n"
        "print('locked', flush=True)\ntime.sleep(60)\n")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(ValueError, match=r"is being trained by another process \(pid 4242 on nodeA\)"):
            train(config(tmp_path, out, steps=4), resume=True, **QUIET)
        with pytest.raises(ValueError, match="being trained by another process"):
            train(config(tmp_path, out, steps=2), overwrite=True, **QUIET)  # would have deleted its checkpoints
        assert (out / "metrics.jsonl").read_text() == before and ckpt.has_checkpoint(out)
    finally:
        holder.kill()
        holder.wait()
    train(config(tmp_path, out, steps=4), resume=True, **QUIET)
    assert steps_logged(out) == [1, 2, 3, 4]


def test_a_file_system_without_locks_is_said_not_fatal(tmp_path, monkeypatch):
    import fcntl

    def no_locks(fd, op):
        raise OSError(37, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    said = []
    train(config(tmp_path, tmp_path / "run", steps=2), progress=False, log=said.append)
    assert steps_logged(tmp_path / "run") == [1, 2]
    assert any("cannot lock" in line and "No locks available" in line for line in said)
