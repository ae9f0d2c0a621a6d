"""Checkpoints: written atomically, verified on load, resumed exactly.

A checkpoint is a folder ``step_NNNNNNN`` holding ``model.safetensors`` (weights), ``optimizer.pt``
(optimizer state), ``state.pt`` (carried hidden states, field by field, and RNG states of every
process: tensors, lists and dicts only, read with ``weights_only``) and ``record.json`` (resolved
run config, model config, tokenizer, step, metrics, and the sha256 of every other file). It is assembled in a temporary folder and renamed into place, and ``latest`` (a one-line
file, itself replaced atomically) names the newest, so a crash leaves the previous one intact.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_model as load_safetensors, save_model as save_safetensors

SHARDED = "dcp"  # the folder of a sharded run's model and optimizer (torch.distributed.checkpoint)


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
    """Write ``run_dir/checkpoints/step_{step}`` atomically and point ``latest`` at it. A failed
    write (read-only folder, no space left) removes its temporary folder, leaves the previous
    checkpoint and ``latest`` as they were, and raises an OSError that says so."""
    root = Path(run_dir) / "checkpoints"
    try:
        return _write_checkpoint(root, step, model, optimizer, extra_state, record, keep)
    except OSError as e:
        latest = (root / "latest").read_text().strip() if (root / "latest").exists() else None
        kept = f"the previous checkpoint {root / latest} is kept" if latest else "no earlier checkpoint exists"
        raise OSError(f"could not write the checkpoint of step {step} in {root} ({e.strerror or e}); {kept}; "
                      f"free space or make the folder writable, then resume") from None


def _write_checkpoint(root: Path, step, model, optimizer, extra_state, record, keep) -> Path:
    tmp = begin_checkpoint(root)
    try:
        save_safetensors(model, str(tmp / "model.safetensors"))
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return finish_checkpoint(root, tmp, step, extra_state, record, keep)


def begin_checkpoint(root: Path) -> Path:
    """A new temporary folder in ``root`` to assemble a checkpoint in (stale ones removed)."""
    root.mkdir(parents=True, exist_ok=True)
    for stale in root.glob(".tmp-*"):  # a write that a killed process left half done
        shutil.rmtree(stale, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=".tmp-", dir=root))


def finish_checkpoint(root: Path, tmp: Path, step: int, extra_state, record: dict, keep: int) -> Path:
    """Add ``state.pt`` and ``record.json`` (the sha256 of every file in ``tmp``) to the weights
    already in ``tmp``, rename it into place as ``step_NNNNNNN`` and point ``latest`` at it."""
    final = root / f"step_{step:07d}"
    try:
        torch.save(extra_state, tmp / "state.pt")
        files = sorted(str(p.relative_to(tmp)) for p in tmp.rglob("*") if p.is_file())
        record = {**record, "format": FORMAT, "step": step, "sha256": {f: _sha256(tmp / f) for f in files}}
        (tmp / "record.json").write_text(json.dumps(record, indent=1))
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    pointer = root / ".latest.tmp"
    try:
        pointer.write_text(final.name + "\n")
        os.replace(pointer, root / "latest")
    except BaseException:
        pointer.unlink(missing_ok=True)
        raise
    for old in sorted(p for p in root.glob("step_*") if p != final)[:-max(keep - 1, 0) or None]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def save_model_only(folder: str | Path, model: torch.nn.Module, record: dict[str, Any]) -> Path:
    """A checkpoint of weights and record only (an imported or converted model: no optimizer, no
    carried state), written atomically into the new folder ``folder``; it loads with
    :func:`load_model` (eval, generate, info, exports), not as a training run to resume."""
    folder = Path(folder)
    if folder.exists():
        raise FileExistsError(f"{folder} exists; choose a new folder")
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.tmp-", dir=folder.parent))
    try:
        save_safetensors(model, str(tmp / "model.safetensors"))
        record = {**record, "format": FORMAT, "step": 0, "weights_only": True,
                  "sha256": {"model.safetensors": _sha256(tmp / "model.safetensors")}}
        (tmp / "record.json").write_text(json.dumps(record, indent=1))
        os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def has_checkpoint(run_dir: str | Path) -> bool:
    """Whether the run folder has saved a checkpoint (its ``latest`` pointer exists)."""
    return (Path(run_dir) / "checkpoints" / "latest").exists()


def find_checkpoint(path: str | Path) -> Path:
    """A checkpoint folder from itself, a run folder, or a checkpoints folder (via ``latest``)."""
    path = Path(path)
    for candidate in (path, path / "checkpoints"):
        if (candidate / "record.json").exists():
            return candidate
        if (candidate / "latest").exists():
            return candidate / (candidate / "latest").read_text().strip()
    raise CheckpointError(f"{path}: no checkpoint here (expected record.json or a 'latest' pointer)")


def newest_verified(run_dir: str | Path, log=print) -> Path:
    """The checkpoint ``latest`` names if it verifies; otherwise the newest one that does (saying
    so). A checkpoint whose files are missing, truncated or altered is never loaded."""
    root = Path(run_dir) / "checkpoints"
    latest = find_checkpoint(run_dir)
    candidates = [latest] + sorted((p for p in root.glob("step_*") if p != latest), reverse=True)
    errors = []
    for path in candidates:
        try:
            verify(path, read_record(path))
        except CheckpointError as e:
            log(f"skipping checkpoint {path.name}: {e}")
            errors.append(str(e))
            continue
        if path != latest:
            log(f"resuming from {path.name}, the newest checkpoint that verifies")
        return path
    raise CheckpointError(f"no checkpoint in {root} verifies: {'; '.join(errors)}")


def read_record(ckpt: Path) -> dict:
    try:
        return json.loads((ckpt / "record.json").read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{ckpt / 'record.json'}: missing") from None
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{ckpt / 'record.json'}: corrupted ({e})") from None


def verify(ckpt: Path, record: dict, files=None) -> None:
    """The checksums of ``files`` (default: every file the record names) match."""
    if not isinstance(record.get("sha256"), dict):
        raise CheckpointError(f"{ckpt / 'record.json'}: has no checksums")
    for name in files or record["sha256"]:
        path = ckpt / name
        if not path.exists():
            raise CheckpointError(f"{path}: missing")
        if _sha256(path) != record["sha256"][name]:
            raise CheckpointError(f"{path}: checksum mismatch (truncated or corrupted)")


def load_weights(ckpt: Path, model: torch.nn.Module) -> None:
    """The checkpoint's weights into ``model`` (plain or FSDP-sharded), from safetensors or, for a
    checkpoint of a sharded run, from its ``dcp`` folder (resharded to this process count)."""
    if (ckpt / SHARDED).is_dir():
        from longssm.models.sharded import load_sharded

        return load_sharded(ckpt / SHARDED, model)
    try:
        missing, unexpected = load_safetensors(model, str(ckpt / "model.safetensors"), strict=False)
    except Exception as e:  # safetensors raises its own error types for malformed headers
        raise CheckpointError(f"{ckpt / 'model.safetensors'}: unreadable ({e})") from None
    if missing or unexpected:
        raise CheckpointError(f"{ckpt / 'model.safetensors'}: does not match the model "
                              f"(missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]})")


def load_extra(ckpt: Path, name: str) -> Any:
    """A ``.pt`` file of tensors, lists and dicts. ``state.pt`` files written before the core
    seam pickled the state classes themselves; they are read through :class:`_LegacyUnpickler`."""
    path = ckpt / name
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        return torch.load(path, map_location="cpu", weights_only=False, pickle_module=_legacy_pickle)
    except Exception as e:
        raise CheckpointError(f"{path}: unreadable ({e})") from None


#: State classes that moved since checkpoints pickled them: old path -> module of the new home.
_MOVED = {("longssm.models.model", "ModelState"): "longssm.models.state"}


class _LegacyUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        return super().find_class(_MOVED.get((module, name), module), name)


class _legacy_pickle:  # a pickle_module for torch.load: the standard one with the unpickler above
    Unpickler = _LegacyUnpickler
    load = pickle.load
    __name__ = "longssm_legacy_pickle"


FORMAT = 2  # record["format"]: 2 since the core seam (states field by field); absent before


def legacy_parameter_order(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    """``model.parameters()`` in the order of the release before the core seam (format 1), the
    order its optimizer states are stored in: the selective core's own parameters (A_log, D) were
    then the Mamba block's own, listed before the block's submodules, and the core's submodules
    (x_proj, dt_proj) sat in its place."""
    from longssm.layers.selective import SelectiveSSM

    def walk(m):
        own, children = list(m._parameters.values()), list(m._modules.items())
        if isinstance(m, SelectiveSSM):
            own += list(m.core._parameters.values())
            children = [kv for name, c in children for kv in (m.core._modules.items() if name == "core" else [(name, c)])]
        yield from (p for p in own if p is not None)
        for _, child in children:
            if child is not None:
                yield from walk(child)

    return list({id(p): p for p in walk(model)}.values())


def load_model(path: str | Path):
    """Model, tokenizer, record and folder from a checkpoint, a run folder or a checkpoints folder
    (weights verified against their checksum). The model is in eval mode on the CPU."""
    from longssm.data import tokenizer_from_json
    from longssm.models.config import ModelConfig
    from longssm.models.model import LanguageModel

    folder = find_checkpoint(path)
    record = read_record(folder)
    verify(folder, record, files=[f for f in record["sha256"] if f == "model.safetensors" or f.startswith(SHARDED + "/")])
    model = LanguageModel(ModelConfig.from_dict(record["model_config"]))
    load_weights(folder, model)
    return model.eval(), tokenizer_from_json(record["tokenizer"]), record, folder
