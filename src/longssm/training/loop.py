"""The training loop: plain Python, readable top to bottom.

AdamW with parameter groups from the mixers' hints, linear warm-up + cosine decay, gradient
clipping and accumulation, bf16 autocast on CUDA, periodic evaluation, a progress bar, JSON-lines
metrics, atomic checkpoints with exact resume, and DDP when launched by ``torchrun``.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from longssm.data import ConsecutiveStreams, RandomWindows
from longssm.data.prepare import prepare_splits
from longssm.evaluation.perplexity import evaluate
from longssm.layers import param_groups
from longssm.layers.state import map_tensors
from longssm.models import LanguageModel, count_parameters, reset_rows
from longssm.training import checkpoint as ckpt
from longssm.training.config import RunConfig
from longssm.training.distributed import Distributed
from longssm.training.states import carry, noise_state


class NaNLossError(RuntimeError):
    """Raised when a step's loss is not finite; the last good checkpoint is left untouched."""


def lr_at(step: int, cfg) -> float:
    """Multiplier of each group's peak lr: linear warm-up, then cosine decay to min_lr_ratio."""
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def _device(cfg) -> torch.device:
    if cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")


def _autocast(cfg, device):
    bf16 = cfg.precision == "bf16" or (cfg.precision == "auto" and device.type == "cuda")
    return torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()


def train(run: RunConfig, *, resume: bool = False, progress: bool = True, log=print) -> dict:
    """Train as configured; returns the final metrics. ``resume`` continues from the newest
    checkpoint in ``train.out_dir`` (exactly: same data, RNG, optimizer and carried states)."""
    cfg = run.train
    dist = Distributed.from_env()
    device = dist.device(_device(cfg))
    out = Path(cfg.out_dir)
    torch.manual_seed(cfg.seed)
    if cfg.state_init == "previous" and cfg.global_batch % dist.world:
        raise ValueError(f"the global batch {cfg.global_batch} must divide across {dist.world} processes")

    with dist.rank0_first():
        train_shard, valid_shard = prepare_splits(run.data, run.data.cache_dir or out / "data", log=dist.log(log))
    tokenizer = train_shard.tokenizer
    model = LanguageModel(run.model_config(tokenizer.vocab_size)).to(device)
    groups = param_groups(model, cfg.lr, cfg.weight_decay)
    for g in groups:
        g["peak_lr"] = g["lr"]
    optimizer = torch.optim.AdamW(groups, betas=(cfg.beta1, cfg.beta2))

    Loader = ConsecutiveStreams if cfg.state_init == "previous" else RandomWindows
    loader_args = (train_shard.tokens, train_shard.doc_starts) if Loader is ConsecutiveStreams else (train_shard.tokens,)
    loader = Loader(*loader_args, cfg.global_batch, cfg.seq_len, **({} if Loader is ConsecutiveStreams else {"seed": cfg.seed}),
                    rank=dist.rank, world=dist.world)
    local_batch = cfg.global_batch // dist.world
    if local_batch % cfg.accumulate:
        raise ValueError(f"train.accumulate={cfg.accumulate} must divide the per-process batch {local_batch}")
    micro = local_batch // cfg.accumulate
    states = [None] * cfg.accumulate  # carried state of each micro-batch's rows

    start, record = 0, {}
    if resume and (out / "checkpoints" / "latest").exists():
        path = ckpt.find_checkpoint(out)
        record = ckpt.read_record(path)
        ckpt.verify(path, record)
        ckpt.load_weights(path, model)
        optimizer.load_state_dict(ckpt.load_extra(path, "optimizer.pt"))
        extra = ckpt.load_extra(path, "state.pt")[dist.rank]
        torch.set_rng_state(extra["rng"])
        states = [None if s is None else type(s)(*s) for s in extra["states"]]
        states = [None if s is None else _to(s, device) for s in states]
        start = record["step"]
        log(f"resumed from {path} at step {start}") if dist.rank == 0 else None

    net = dist.wrap(model)
    metrics_file = out / "metrics.jsonl"
    if dist.rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        dist.log(log)(f"model: {count_parameters(model):,} parameters, mixers {model.config.mixers}; "
                      f"{cfg.global_batch} x {cfg.seq_len} tokens per step, state_init={cfg.state_init}")
    bar = tqdm(total=cfg.steps, initial=start, disable=not progress or dist.rank != 0, unit="step", dynamic_ncols=True)
    say = bar.write if progress else dist.log(log)  # messages that do not break the bar
    t_start, t_last, step_last, last = time.time(), time.time(), start, {}
    for step in range(start, cfg.steps):
        for g in optimizer.param_groups:
            g["lr"] = g["peak_lr"] * lr_at(step, cfg)
        batch = loader.batch_at(step)
        loss_sum = torch.zeros((), device=device)
        for j in range(cfg.accumulate):
            rows = slice(j * micro, (j + 1) * micro)
            x, y = batch.inputs[rows].to(device), batch.targets[rows].to(device)
            s0 = _initial_state(cfg, model, states[j], batch.reset[rows].to(device), step, j, dist, micro, device)
            sync = j == cfg.accumulate - 1
            with (contextlib.nullcontext() if sync else dist.no_sync(net)), _autocast(cfg, device):
                # Only previous-initialised training reads the final state; keep it detached so the
                # graph behind it is freed before backward (less peak memory at short T).
                logits, s1 = net(x, s0, return_state=cfg.state_init == "previous")
                s1 = None if s1 is None else carry(s1)
                loss = F.cross_entropy(logits.float().flatten(0, 1), y.flatten()) / cfg.accumulate
            loss.backward()
            loss_sum += loss.detach()
            if s1 is not None:
                states[j] = s1
        loss_value = dist.mean(loss_sum).item()
        if not math.isfinite(loss_value):
            raise NaNLossError(f"step {step}: loss is {loss_value}; stopped. The last good checkpoint "
                               f"in {out / 'checkpoints'} is untouched (lower train.lr or check the data).")
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip or float("inf")).item()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        done = step + 1
        bar.update(1)
        now = time.time()
        if done % cfg.log_every == 0 or done == cfg.steps:
            tok_s = (done - step_last) * cfg.global_batch * cfg.seq_len / max(now - t_last, 1e-9)
            last = {"step": done, "loss": loss_value, "lr": optimizer.param_groups[0]["lr"],
                    "grad_norm": grad_norm, "tokens_per_s": tok_s, "elapsed_s": now - t_start}
            bar.set_postfix(loss=f"{loss_value:.3f}", lr=f"{last['lr']:.2e}", tok_s=f"{tok_s:,.0f}")
            t_last, step_last = now, done
            if dist.rank == 0:
                with open(metrics_file, "a") as f:
                    f.write(json.dumps(last) + "\n")
        out_of_time = cfg.max_minutes and (now - t_start) / 60 >= cfg.max_minutes
        if (cfg.eval_every and done % cfg.eval_every == 0) or done == cfg.steps or out_of_time:
            ev = evaluate(model, valid_shard.tokens, cfg.seq_len, "zero", batch=max(1, micro),
                          max_tokens=cfg.eval_batches * max(1, micro) * cfg.seq_len, device=device)
            last = {**last, "step": done, "val_loss": ev["loss"], "val_ppl": ev["perplexity"]}
            if dist.rank == 0:
                with open(metrics_file, "a") as f:
                    f.write(json.dumps({"step": done, "val_loss": ev["loss"]}) + "\n")
                say(f"step {done}: val loss {ev['loss']:.4f} (ppl {ev['perplexity']:.2f})")
        if done % cfg.checkpoint_every == 0 or done == cfg.steps or out_of_time:
            _save(out, done, model, optimizer, states, run, tokenizer, last, dist, cfg.keep_checkpoints)
        if out_of_time:
            say(f"stopping after {cfg.max_minutes} minutes at step {done}")
            break
    bar.close()
    dist.close()
    return last


def _to(state, device):
    return map_tensors(lambda t: t.to(device), state)


def _initial_state(cfg, model, carried, reset, step, j, dist, micro, device):
    if cfg.state_init == "zero":
        return None
    if cfg.state_init == "noise":
        first = dist.rank * cfg.global_batch // dist.world + j * micro
        return noise_state(model, cfg.global_batch, slice(first, first + micro), cfg.noise_std,
                           cfg.seed * 1_000_003 + step, device, next(model.parameters()).dtype)
    return None if carried is None else reset_rows(carried, reset)


def _save(out, step, model, optimizer, states, run, tokenizer, metrics, dist, keep):
    cpu_states = [None if s is None else _to(s, "cpu") for s in states]
    extra = dist.gather({"rng": torch.get_rng_state(), "states": cpu_states})
    if dist.rank == 0:
        record = {"config": run.to_dict(), "model_config": model.config.to_dict(),
                  "tokenizer": tokenizer.to_json(), "metrics": metrics, "world": dist.world}
        ckpt.save_checkpoint(out, step, model, optimizer, extra, record, keep=keep)
    dist.barrier()
