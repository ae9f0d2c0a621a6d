"""The kill drill: a small training run is killed with SIGKILL at random moments (many of them
while a checkpoint is being written, which happens every step), resumed each time, and compared
with the same run left alone.

Run it alone for its figures: ``python tests/training/kill_drill.py [KILLS]``; the slow test
``test_kill_drill`` runs it with 20 kills.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TEXT = "".join(f"Line {i}: the quick brown fox jumps over the lazy dog {i * 7 % 13}.\n" for i in range(600))
STEPS = 2000


def _args(run: Path, corpus: Path) -> list[str]:
    return ["--no-progress", "--set", "model.n_layer=2", "--set", "model.d_model=16",
            "--set", 'model.mixers=["h3", "mamba"]', "--set", "model.mixer_options.h3.d_state=4",
            "--set", "model.mixer_options.h3.shift_state=4", "--set", "model.mixer_options.mamba.d_state=4",
            "--set", f'data.train=["{corpus}"]', "--set", f'data.valid=["{corpus}"]',
            "--set", f"train.steps={STEPS}", "--set", "train.batch_size=2", "--set", "train.seq_len=16",
            "--set", "train.state_init=previous", "--set", "train.eval_every=0", "--set", "train.eval_batches=1",
            "--set", "train.log_every=1", "--set", "train.checkpoint_every=1", "--set", "train.keep_checkpoints=2",
            "--set", f'train.out_dir="{run}"']


def _lines(run: Path) -> int:
    try:
        return len((run / "metrics.jsonl").read_text().splitlines())
    except FileNotFoundError:
        return 0


def _losses(run: Path) -> dict[int, list[float]]:
    """Every logged loss by step (a step logged twice would show two values)."""
    out: dict[int, list[float]] = {}
    for line in (run / "metrics.jsonl").read_text().splitlines():
        r = json.loads(line)
        if "loss" in r:
            out.setdefault(r["step"], []).append(r["loss"])
    return out


def drill(workdir: Path, kills: int = 20, seed: int = 0) -> dict:
    from longssm.models import checkpoint as ckpt

    rng = random.Random(seed)
    corpus = workdir / "corpus.txt"
    corpus.write_text(TEXT)
    cli = [sys.executable, "-m", "longssm.cli.main", "train"]
    ref, run = workdir / "ref", workdir / "run"
    subprocess.run(cli + _args(ref, corpus), check=True, capture_output=True)
    done_kills, resumes, unverified = 0, 0, 0
    while True:
        has_ckpt = (run / "checkpoints" / "latest").exists()
        argv = cli + (["--resume", str(run)] if has_ckpt else _args(run, corpus) + ["--overwrite"])
        resumes += has_ckpt
        logged = _lines(run)
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if done_kills < kills:
            deadline = time.time() + 120
            while _lines(run) <= logged and proc.poll() is None and time.time() < deadline:
                time.sleep(0.05)  # until this life trains (past start-up), whatever the machine's speed
            time.sleep(rng.uniform(0.0, 0.4))  # then somewhere in a step or in a checkpoint write
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                done_kills += 1
        _, err = proc.communicate()
        if proc.returncode == 0:
            break
        if proc.returncode != -signal.SIGKILL:
            raise RuntimeError(f"training failed (exit {proc.returncode}): {err}")
        if (run / "checkpoints" / "latest").exists():
            try:
                ckpt.newest_verified(run, log=lambda *_: None)
            except ckpt.CheckpointError:
                unverified += 1
    ref_losses, run_losses = _losses(ref), _losses(run)
    twice = sorted(s for s, v in run_losses.items() if len(v) > 1)
    mismatches = sorted(s for s in ref_losses if abs(run_losses.get(s, [float("nan")])[0] - ref_losses[s][0]) > 1e-6
                        or s not in run_losses)
    leftovers = [str(p) for p in (run / "checkpoints").glob(".*tmp*")]
    final = ckpt.find_checkpoint(run)
    ckpt.verify(final, ckpt.read_record(final))
    return {"kills": done_kills, "resumes": resumes, "steps_compared": len(ref_losses), "mismatches": len(mismatches),
            "steps_logged_twice": len(twice), "kills_leaving_no_verified_checkpoint": unverified,
            "temporary_files_left": len(leftovers), "final_step": ckpt.read_record(final)["step"]}


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        print(json.dumps(drill(Path(tmp), int(sys.argv[1]) if len(sys.argv) > 1 else 20), indent=1))
