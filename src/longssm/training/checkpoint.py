"""Checkpoints: written atomically, verified on load, resumed exactly.

A checkpoint is a folder ``step_NNNNNNN`` holding ``model.safetensors`` (weights), ``optimizer.pt``
(optimizer state), ``state.pt`` (carried hidden states and RNG states of every process) and
``record.json`` (resolved run config, tokenizer, step, metrics, and the sha256 of every other
file). It is assembled in a temporary folder and renamed into place, and ``latest`` (a one-line
file, itself replaced atomically) names the newest, so a crash leaves the previous one intact.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_model, save_model

FILES = ("model.safetensors", "optimizer.pt", "state.pt")


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, truncated or corrupted; the message names the file."""


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def save_checkpoint(run_dir: str | Path, step: int, model: torch.nn.Module, optimizer, extra_state: dict,
                    record: dict[str, Any], keep: int = 2) -> Path:
    """Write ``run_dir/checkpoints/step_{step}`` atomically and point ``latest`` at it."""
    root = Path(run_dir) / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step_{step:07d}"
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=root))
    try:
        save_model(model, str(tmp / "model.safetensors"))
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        torch.save(extra_state, tmp / "state.pt")
        record = {**record, "step": step, "sha256": {f: _sha256(tmp / f) for f in FILES}}
        (tmp / "record.json").write_text(json.dumps(record, indent=1))
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    pointer = root / ".latest.tmp"
    pointer.write_text(final.name + "\n")
    os.replace(pointer, root / "latest")
    for old in sorted(p for p in root.glob("step_*") if p != final)[:-max(keep - 1, 0) or None]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def find_checkpoint(path: str | Path) -> Path:
    """A checkpoint folder from itself, a run folder, or a checkpoints folder (via ``latest``)."""
    path = Path(path)
    for candidate in (path, path / "checkpoints"):
        if (candidate / "record.json").exists():
            return candidate
        if (candidate / "latest").exists():
            return candidate / (candidate / "latest").read_text().strip()
    raise CheckpointError(f"{path}: no checkpoint here (expected record.json or a 'latest' pointer)")


def read_record(ckpt: Path) -> dict:
    try:
        return json.loads((ckpt / "record.json").read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{ckpt / 'record.json'}: missing") from None
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{ckpt / 'record.json'}: corrupted ({e})") from None


def verify(ckpt: Path, record: dict, files=FILES) -> None:
    for name in files:
        path = ckpt / name
        if not path.exists():
            raise CheckpointError(f"{path}: missing")
        if _sha256(path) != record["sha256"][name]:
            raise CheckpointError(f"{path}: checksum mismatch (truncated or corrupted)")


def load_weights(ckpt: Path, model: torch.nn.Module) -> None:
    try:
        missing, unexpected = load_model(model, str(ckpt / "model.safetensors"), strict=False)
    except Exception as e:  # safetensors raises its own error types for malformed headers
        raise CheckpointError(f"{ckpt / 'model.safetensors'}: unreadable ({e})") from None
    if missing or unexpected:
        raise CheckpointError(f"{ckpt / 'model.safetensors'}: does not match the model "
                              f"(missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]})")


def load_extra(ckpt: Path, name: str) -> Any:
    return torch.load(ckpt / name, map_location="cpu", weights_only=False)
