"""The training loop: plain Python, readable top to bottom.

:func:`train` is three steps: :func:`setup` (data, model, optimiser, loader), :func:`restore`
(exact resume from the newest checkpoint) and :func:`run_steps` (the loop). AdamW with parameter
groups from the mixers' hints, linear warm-up + cosine decay (``training.optim``), gradient
clipping and accumulation, bf16 autocast on CUDA, periodic evaluation, a progress bar, JSON-lines
metrics, atomic checkpoints, and DDP when launched by ``torchrun``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from tqdm import tqdm

from longssm.data import ConsecutiveStreams, RandomWindows, tokenizer_from_json, tokenizer_hash
from longssm.data.prepare import prepare_splits
from longssm.evaluation.perplexity import evaluate
from longssm.models import LanguageModel, count_parameters, set_activation_checkpointing
from longssm.models import checkpoint as ckpt
from longssm.models.sharded import load_full_into_sharded, load_sharded, save_sharded
from longssm.models.state import carry, load_state_tensors, noise_state, reset_rows, state_tensors, to_device
from longssm.training.config import RunConfig, with_absolute_paths
from longssm.training.distributed import Distributed
from longssm.training.optim import adamw, lr_scale, optimizer_step, param_groups, set_lr
from longssm.training.run_dir import check_run_dir, new_run_dir, run_lock


class NaNLossError(RuntimeError):
    """Raised when a step's loss is not finite; the last good checkpoint is left untouched."""


def _device(cfg) -> torch.device:
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("train.device = 'cuda', but this PyTorch sees no CUDA device; use 'cpu' or 'auto'")
    if cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")


def _bf16(cfg, device) -> bool:
    return cfg.precision == "bf16" or (cfg.precision == "auto" and device.type == "cuda")


def _autocast(cfg, device):
    return torch.autocast(device.type, dtype=torch.bfloat16) if _bf16(cfg, device) else contextlib.nullcontext()


@dataclass
class Session:
    """Everything a run trains with, built by :func:`setup`."""

    run: RunConfig
    dist: Distributed
    device: torch.device
    out: Path
    model: LanguageModel
    optimizer: torch.optim.Optimizer
    loader: Any
    valid_tokens: Any
    tokenizer: Any
    micro: int  # rows per micro-batch
    net: Any = None  # the model as trained: itself, or wrapped by DDP (set by run_steps)
    elapsed0: float = 0.0  # wall seconds trained before a resume


def train(run: RunConfig, *, resume: bool | str = False, overwrite: bool = False, progress: bool = True,
          log=print) -> dict:
    """Train as configured; returns the final metrics (with ``"interrupted": True`` when SIGINT or
    SIGTERM stopped it after saving a checkpoint).

    ``resume=True`` continues from the newest checkpoint in ``train.out_dir`` (exactly: same data,
    RNG, optimizer and carried states) and is an error where there is none; ``resume="auto"``
    continues if there is one and starts otherwise. A folder that already holds a run is never
    written over without ``resume`` or ``overwrite`` (which first removes its checkpoints and
    metrics, not its prepared data)."""
    if not run.train.out_dir:
        if resume:
            raise ValueError("--resume needs the run folder: --resume RUN_DIR, or train.out_dir")
        run = dataclasses.replace(run, train=dataclasses.replace(run.train, out_dir=new_run_dir(run)))
    run = with_absolute_paths(run)
    with run_lock(Path(run.train.out_dir), log):
        check_run_dir(Path(run.train.out_dir), resume, overwrite)
        s = setup(run, log)
        start, states = restore(s, log) if resume else (0, [None] * run.train.accumulate)
        try:
            result = run_steps(s, start, states, progress, log)
        except BaseException:
            s.dist.close(orderly=False)  # a peer may have failed too: do not wait for it
            raise
        s.dist.close()
    return result


def setup(run: RunConfig, log=print) -> Session:
    cfg = run.train
    dist = Distributed.from_env()
    device = dist.device(_device(cfg))
    out = Path(cfg.out_dir)
    torch.manual_seed(cfg.seed)
    if cfg.state_init == "previous" and cfg.global_batch % dist.world:
        raise ValueError(f"the global batch {cfg.global_batch} must divide across {dist.world} processes")
    with dist.rank0_first():
        train_shard, valid_shard = prepare_splits(run.data, run.data.cache_dir or out / "data", log=dist.log(log))
    model = LanguageModel(run.model_config(train_shard.tokenizer.vocab_size)).to(device)
    if cfg.activation_checkpointing:
        set_activation_checkpointing(model)
    if cfg.parallel == "fsdp":
        dist.shard(model, bf16=_bf16(cfg, device))  # before the optimizer: it must see the shards
    optimizer = adamw(model, cfg.lr, cfg.weight_decay, betas=(cfg.beta1, cfg.beta2))
    if cfg.state_init == "previous":
        loader = ConsecutiveStreams(train_shard.tokens, train_shard.doc_starts, cfg.global_batch, cfg.seq_len,
                                    rank=dist.rank, world=dist.world)
    else:
        loader = RandomWindows(train_shard.tokens, cfg.global_batch, cfg.seq_len, seed=cfg.seed,
                               rank=dist.rank, world=dist.world)
    local_batch = cfg.global_batch // dist.world
    if local_batch % cfg.accumulate:
        raise ValueError(f"train.accumulate={cfg.accumulate} must divide the per-process batch {local_batch}")
    return Session(run, dist, device, out, model, optimizer, loader, valid_shard.tokens, train_shard.tokenizer,
                   local_batch // cfg.accumulate)


def restore(s: Session, log=print) -> tuple[int, list]:
    """(step, carried state per micro-batch) of the newest checkpoint, weights, optimiser and RNG
    loaded; (0, no states) when the run has none yet."""
    if not ckpt.has_checkpoint(s.out):
        return 0, [None] * s.run.train.accumulate
    path = ckpt.newest_verified(s.out, log=s.dist.log(log))
    record = ckpt.read_record(path)
    if tokenizer_hash(tokenizer_from_json(record["tokenizer"])) != tokenizer_hash(s.tokenizer):
        raise ValueError(f"{path} was trained with another tokenizer than the data now prepared for it "
                         f"({tokenizer_hash(s.tokenizer)}); resume with the run's own data")
    if (path / ckpt.SHARDED).is_dir():  # a sharded run's checkpoint, into any process count
        load_sharded(path / ckpt.SHARDED, s.model, s.optimizer)
    elif _is_sharded(s.model):  # a single-process checkpoint into a sharded run
        load_full_into_sharded(s.model, s.optimizer, load_file(str(path / "model.safetensors")),
                               ckpt.load_extra(path, "optimizer.pt"))
    else:
        ckpt.load_weights(path, s.model)
        _load_optimizer(s, ckpt.load_extra(path, "optimizer.pt"), legacy=record.get("format", 1) < ckpt.FORMAT)
    extras = ckpt.load_extra(path, "state.pt")
    torch.set_rng_state(extras[s.dist.rank % len(extras)]["rng"])
    template = carry(s.model.init_state(s.micro, device=s.device), s.model.carried)
    saved = _states_for(extras, s.dist.rank, s.dist.world, s.run.train.accumulate, s.micro)
    states = [None if t is None else to_device(load_state_tensors(template, t, f"{path}/state.pt"), s.device)
              for t in saved]
    if s.dist.rank == 0:
        _cut_metrics(s.out / "metrics.jsonl", record["step"])
        log(f"resumed from {path} at step {record['step']}")
    s.elapsed0 = float(record.get("metrics", {}).get("elapsed_s", 0.0))
    return record["step"], states


def _is_sharded(model) -> bool:
    return any(hasattr(p, "device_mesh") for p in model.parameters())


def _states_for(extras: list, rank: int, world: int, accumulate: int, micro: int) -> list:
    """This process's carried states (by field path, per micro-batch) from those every process of
    the saved run kept: the same when the process count is unchanged; otherwise the global batch's
    rows (process-major, then micro-batch, as the loaders split them) cut again for this count."""
    per_rank = [[None if t is None else _fields(t) for t in e["states"]] for e in extras]
    if len(extras) == world:
        return per_rank[rank]
    flat = [t for states in per_rank for t in states]
    if all(t is None for t in flat):
        return [None] * accumulate
    if any(t is None for t in flat):
        raise ValueError("the checkpoint holds carried states for some micro-batches only; resume it with "
                         f"its own process count ({len(extras)})")
    rows = {k: torch.cat([t[k] for t in flat]) for k in flat[0]}
    first = rank * accumulate * micro
    return [{k: v[first + j * micro: first + (j + 1) * micro] for k, v in rows.items()} for j in range(accumulate)]


def _cut_metrics(path: Path, step: int) -> None:
    """Drop the lines logged after the checkpoint a run resumes from, so every step appears once."""
    if not path.exists():
        return
    lines = path.read_text().splitlines()
    kept = [ln for ln in lines if _step_of(ln) <= step]
    if len(kept) != len(lines):
        tmp = path.with_suffix(".tmp")
        tmp.write_text("".join(ln + "\n" for ln in kept))
        tmp.replace(path)


def _load_optimizer(s: Session, saved: dict, legacy: bool) -> None:
    """Optimizer state; a format-1 checkpoint stored it in that release's parameter order, so it is
    read into an optimizer over that order and handed over parameter by parameter."""
    if not legacy:
        s.optimizer.load_state_dict(saved)
        return
    cfg = s.run.train
    old = torch.optim.AdamW(param_groups(ckpt.legacy_parameter_order(s.model), cfg.lr, cfg.weight_decay))
    old.load_state_dict(saved)
    s.optimizer.state.update(old.state)


def _step_of(line: str) -> float:
    """The step of a metrics line; a torn line (a process killed while writing it) counts as after
    every checkpoint, so it is dropped."""
    try:
        return json.loads(line).get("step", 0)
    except json.JSONDecodeError:
        return float("inf")


def _fields(saved) -> dict:
    """A carried state as saved: tensors by field path, or (checkpoints before the core seam) the
    pickled state itself."""
    return saved if isinstance(saved, dict) else state_tensors(saved)


def train_step(s: Session, step: int, states: list) -> float:
    """One optimiser step (all micro-batches); updates ``states`` in place; returns the mean loss."""
    cfg = s.run.train
    set_lr(s.optimizer, lr_scale(step, cfg.warmup_steps, cfg.steps, cfg.min_lr_ratio))
    batch = s.loader.batch_at(step)
    loss_sum = torch.zeros((), device=s.device)
    for j in range(cfg.accumulate):
        rows = slice(j * s.micro, (j + 1) * s.micro)
        x, y = batch.inputs[rows].to(s.device), batch.targets[rows].to(s.device)
        s0 = _initial_state(s, states[j], batch.reset[rows].to(s.device), step, j)
        sync = j == cfg.accumulate - 1
        with (contextlib.nullcontext() if sync else s.dist.no_sync(s.net)), _autocast(cfg, s.device):
            # Only previous-initialised training reads the final state; keep it detached so the
            # graph behind it is freed before backward (less peak memory at short T).
            logits, s1 = s.net(x, s0, return_state=cfg.state_init == "previous")
            s1 = None if s1 is None else carry(s1, s.model.carried)
            loss = F.cross_entropy(logits.float().flatten(0, 1), y.flatten()) / cfg.accumulate
        loss.backward()
        loss_sum += loss.detach()
        if s1 is not None:
            states[j] = s1
    return s.dist.mean(loss_sum).item()


def run_steps(s: Session, start: int, states: list, progress: bool, log) -> dict:
    cfg, dist, model = s.run.train, s.dist, s.model
    s.net = dist.wrap(model) if cfg.parallel == "ddp" else model  # FSDP shards the model itself
    metrics_file = s.out / "metrics.jsonl"
    if dist.rank == 0:
        s.out.mkdir(parents=True, exist_ok=True)
        log(f"model: {count_parameters(model):,} parameters, mixers {model.config.mixers}; "
            f"{cfg.global_batch} x {cfg.seq_len} tokens per step, state_init={cfg.state_init}; run folder {s.out}")
    bar = tqdm(total=cfg.steps, initial=start, disable=not progress or dist.rank != 0, unit="step", dynamic_ncols=True)
    say = bar.write if progress else dist.log(log)  # messages that do not break the bar
    t_start, t_last, step_last, last = time.time() - s.elapsed0, time.time(), start, {}  # t_start: continues after a resume
    with StopRequests() as stop:
        for step in range(start, cfg.steps):
            loss_value = train_step(s, step, states)
            if not math.isfinite(loss_value):
                raise NaNLossError(f"step {step}: loss is {loss_value}; stopped. The last good checkpoint "
                                   f"in {s.out / 'checkpoints'} is untouched (lower train.lr or check the data).")
            grad_norm = optimizer_step(model, s.optimizer, cfg.grad_clip)
            done = step + 1
            bar.update(1)
            now = time.time()
            # this step's numbers (the summary and a checkpoint's record never name an older step's loss)
            last = {"step": done, "loss": loss_value, "lr": s.optimizer.param_groups[0]["lr"],
                    "grad_norm": grad_norm, "elapsed_s": now - t_start}
            if done % cfg.log_every == 0 or done == cfg.steps:
                tok_s = (done - step_last) * cfg.global_batch * cfg.seq_len / max(now - t_last, 1e-9)
                last["tokens_per_s"] = tok_s
                bar.set_postfix(loss=f"{loss_value:.3f}", lr=f"{last['lr']:.2e}", tok_s=f"{tok_s:,.0f}")
                t_last, step_last = now, done
                if dist.rank == 0:
                    with open(metrics_file, "a") as f:
                        f.write(json.dumps(last) + "\n")
            out_of_time = cfg.max_minutes and (now - t_start) / 60 >= cfg.max_minutes
            if (cfg.eval_every and done % cfg.eval_every == 0) or done == cfg.steps or out_of_time:
                ev = evaluate(model, s.valid_tokens, cfg.seq_len, "zero", batch=max(1, s.micro),
                              max_tokens=cfg.eval_batches * max(1, s.micro) * cfg.seq_len, device=s.device)
                last.update(val_loss=ev["loss"], val_ppl=ev["perplexity"])
                if dist.rank == 0:
                    with open(metrics_file, "a") as f:
                        f.write(json.dumps({"step": done, "val_loss": ev["loss"]}) + "\n")
                    say(f"step {done}: val loss {ev['loss']:.4f} (ppl {ev['perplexity']:.2f})")
            interrupted = stop.requested(dist)
            if done % cfg.checkpoint_every == 0 or done == cfg.steps or out_of_time or interrupted:
                _save(s, done, states, last)
            if interrupted:
                if dist.rank == 0:  # one line on stderr, where a scheduler's log keeps it
                    tqdm.write(f"{stop.name}: saved a checkpoint at step {done} in {s.out / 'checkpoints'}; "
                               f"continue with: longssm train --resume {s.out}", file=sys.stderr)
                last = {**last, "interrupted": True}
                break
            if out_of_time:
                say(f"stopping after {cfg.max_minutes} minutes at step {done}")
                break
    bar.close()
    return last


class StopRequests:
    """SIGINT / SIGTERM ask the loop to stop after the current step (with a checkpoint); a second
    SIGINT stops at once (KeyboardInterrupt). Handlers are only installed in the main thread."""

    def __init__(self):
        self.name, self._old = None, {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        self.name = signal.Signals(signum).name
        if signum == signal.SIGINT:  # the next Ctrl-C is not caught
            signal.signal(signal.SIGINT, signal.default_int_handler)

    def requested(self, dist) -> bool:
        """Whether any process was asked to stop (all processes agree, so all save)."""
        flag = torch.tensor(float(self.name is not None))
        if dist.world > 1:
            flag = dist.mean(flag) * dist.world
        if flag.item() and self.name is None:
            self.name = "stop"
        return bool(flag.item())

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)
        return False


def _initial_state(s: Session, carried, reset, step: int, j: int):
    cfg = s.run.train
    if cfg.state_init == "zero":
        return None
    if cfg.state_init == "noise":
        first = s.dist.rank * cfg.global_batch // s.dist.world + j * s.micro
        dtype = next(s.model.parameters()).dtype
        zero = s.model.init_state(cfg.global_batch, device="cpu", dtype=dtype)
        return noise_state(zero, s.model.carried, slice(first, first + s.micro), cfg.noise_std,
                           cfg.seed * 1_000_003 + step, s.device)
    return None if carried is None else reset_rows(carried, reset)


def _save(s: Session, step: int, states: list, metrics: dict) -> None:
    saved = [None if st is None else state_tensors(to_device(st, "cpu")) for st in states]
    extra = s.dist.gather({"rng": torch.get_rng_state(), "states": saved})
    record = {"config": s.run.to_dict(), "model_config": s.model.config.to_dict(),
              "tokenizer": s.tokenizer.to_json(), "metrics": metrics, "world": s.dist.world}
    keep, root = s.run.train.keep_checkpoints, s.out / "checkpoints"
    if _is_sharded(s.model):  # every process writes its shards into rank 0's temporary folder
        tmp = Path(s.dist.broadcast(str(ckpt.begin_checkpoint(root)) if s.dist.rank == 0 else None))
        save_sharded(tmp / ckpt.SHARDED, s.model, s.optimizer)
        s.dist.barrier()
        if s.dist.rank == 0:
            ckpt.finish_checkpoint(root, tmp, step, extra, record, keep)
    elif s.dist.rank == 0:
        ckpt.save_checkpoint(s.out, step, s.model, s.optimizer, extra, record, keep=keep)
    s.dist.barrier()
