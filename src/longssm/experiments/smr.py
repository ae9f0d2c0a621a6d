"""State Memory Replay under sampling-step changes: ``longssm experiment smr``.

Every (task, core, SMR off/on, seed) cell trains one small model at the training sampling rate
(c = 1) and evaluates it at other rates c (time steps scaled by 1 / c) and, for the continuous
task, under jittered sampling (see ``longssm.data.sampling`` for the protocol, which is ours).
Tasks: ``sines`` (continuous-time signals), ``digits`` (pixel sequences at several resolutions),
``listops`` (LRA ListOps, CPU-length preset) and ``lm`` (byte-level language modelling on the
Gutenberg books). Cores: the S4D, S5, H3 and selective (Mamba) mixers.

A cell's records are written as soon as it finishes and merged into the results file, so a run
can be interrupted and resumed: cells with records are not trained again.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from longssm.data import sampling
from longssm.data.listops import VOCAB, make_split
from longssm.layers import configure
from longssm.models import LanguageModel, SequenceClassifier, count_parameters, model_config
from longssm.training.optim import adamw, lr_scale, optimizer_step, set_lr

TASKS = ("sines", "digits", "listops", "lm")
CORES = {"s4d": "s4d", "s5": "s5", "h3": "h3", "mamba": "mamba"}  # core -> architecture of the model table
METRIC = {"sines": "accuracy", "digits": "accuracy", "listops": "accuracy", "lm": "loss"}


@dataclass(frozen=True)
class SMRExperimentConfig:
    """The grid and the training of every cell (``longssm experiment smr --help``)."""

    tasks: tuple[str, ...] = TASKS
    """Tasks: sines, digits, listops, lm."""
    cores: tuple[str, ...] = ("s4d", "s5", "h3", "mamba")
    """SSM mixers: s4d, s5, h3 (S4D long core), mamba (selective)."""
    seeds: tuple[int, ...] = (0, 1, 2)
    """Seeds per cell (initialisation, data order; the task data are fixed)."""
    rates: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0, 4.0)
    """Sampling factors c for the continuous task (inputs c times denser, steps scaled by 1/c)."""
    resolutions: tuple[int, ...] = (8, 11, 16, 23, 32)
    """Digit resolutions r (training 16): c = (r / 16)^2 = 0.25, 0.47, 1, 2.07, 4."""
    holds: tuple[int, ...] = (1, 2, 4)
    """Token tasks: each token held c times (integer c >= 1)."""
    jitter_sigma: float = 0.5
    """Non-uniform sampling of the continuous task: gaps Delta * exp(eps), eps ~ N(0, sigma^2)."""
    d_model: int = 64
    """Model width."""
    n_layer: int = 2
    """Blocks."""
    d_state: int = 16
    """State size of every core (S4D/H3: real dimensions; S5: complex modes; Mamba: N)."""
    smr_kernel: int = 4
    """SMR's memory (the number of recent inputs its gate reads)."""
    lr: float = 3e-3
    """AdamW peak learning rate (SSM parameters: min(1e-3, lr), their own hint)."""
    weight_decay: float = 0.05
    """AdamW weight decay of matrices."""
    batch_size: int = 32
    """Examples (windows for lm) per step."""
    steps: int = 1000
    """Optimiser steps per cell (linear warm-up over the first 10%, cosine to 0.1x)."""
    lm_len: int = 128
    """Language modelling: bytes per training and evaluation window."""
    lm_eval_windows: int = 64
    """Language modelling: validation windows scored at each c."""
    lm_train: tuple[str, ...] = ("../shared/data/gutenberg/train",)
    """Language modelling: training books."""
    lm_valid: tuple[str, ...] = ("../shared/data/gutenberg/valid",)
    """Language modelling: validation books."""


QUICK = dict(seeds=(0,), steps=600, d_model=32, rates=(0.25, 1.0, 4.0), resolutions=(8, 16, 32), holds=(1, 4))


def validate(cfg: SMRExperimentConfig) -> None:
    for name in ("steps", "batch_size", "d_model", "n_layer", "d_state", "smr_kernel", "lm_len", "lm_eval_windows"):
        if getattr(cfg, name) < 1:
            raise ValueError(f"smr.{name} must be >= 1, got {getattr(cfg, name)}")
    if not cfg.seeds:
        raise ValueError("smr.seeds is empty")
    for name, values, allowed in (("tasks", cfg.tasks, TASKS), ("cores", cfg.cores, tuple(CORES))):
        bad = sorted(set(values) - set(allowed))
        if bad:
            raise ValueError(f"unknown {name} {bad}; expected some of {', '.join(allowed)}")
    if 1.0 not in cfg.rates or sampling.DIGIT_TRAIN_RES not in cfg.resolutions or 1 not in cfg.holds:
        raise ValueError("rates, resolutions and holds must include the training rate (1.0, 16, 1)")
    if any(h < 1 or int(h) != h for h in cfg.holds):
        raise ValueError(f"holds must be integers >= 1, got {cfg.holds}")
    if "lm" in cfg.tasks:
        for src in (*cfg.lm_train, *cfg.lm_valid):
            if not Path(src).exists():
                raise FileNotFoundError(f"{src} does not exist (the Gutenberg books live in ../shared/data/gutenberg; "
                                        f"set smr.lm_train / smr.lm_valid or leave lm out of smr.tasks)")


def build_model(cfg: SMRExperimentConfig, task: str, core: str, smr: bool):
    arch = CORES[core]
    mc = model_config(arch, vocab_size={"listops": len(VOCAB), "lm": 256}.get(task, 1), d_model=cfg.d_model,
                      n_layer=cfg.n_layer, ssm_lr=min(1e-3, cfg.lr))
    opts = {**mc.mixer_options[core], "d_state": cfg.d_state, "smr": smr, "smr_kernel": cfg.smr_kernel}
    mc = dataclasses.replace(mc, mixer_options={core: opts})
    if task == "lm":
        return LanguageModel(mc)
    classes = {"sines": sampling.SINE_CLASSES, "digits": 10, "listops": 10}[task]
    return SequenceClassifier(mc, classes, d_input=None if task == "listops" else 1)


# ---- tasks: training batches and evaluations -------------------------------------------------

class Task:
    """Training data (``batch(rng)``) and evaluation points (``evaluate(model)`` -> records)."""

    def __init__(self, name: str, cfg: SMRExperimentConfig):
        self.name, self.cfg = name, cfg
        getattr(self, f"_init_{name}")()

    # sines: a fresh training set drawn once; the test signals are sampled at every rate
    def _init_sines(self):
        self.train = sampling.sines(4000, seed=10_000)
        self.test = sampling.sines(500, seed=20_000)
        times, _ = sampling.uniform_times(4000, 1.0)
        self.train_x = self.train.at(times, np.random.default_rng(1))
        self.train_y = torch.from_numpy(self.train.label)

    def _init_digits(self):
        images, labels = sampling.digits()
        order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))
        test, train = order[:300], order[300:]
        self.train_x = sampling.resample(images[train], sampling.DIGIT_TRAIN_RES)
        self.train_y, self.test_images, self.test_y = labels[train], images[test], labels[test]

    def _init_listops(self):
        self.train_set, self.test_set = make_split(4000, 500, seed=0)

    def _init_lm(self):
        from longssm.data import read_documents

        # byte tokens: the files' raw bytes
        encode = lambda srcs: np.concatenate([np.frombuffer(d.data, np.uint8) for d in read_documents(list(srcs))])
        self.train_tokens = torch.from_numpy(encode(self.cfg.lm_train).astype(np.int64))
        valid = torch.from_numpy(encode(self.cfg.lm_valid).astype(np.int64))
        L, n = self.cfg.lm_len, self.cfg.lm_eval_windows
        starts = torch.linspace(0, valid.numel() - L - 2, n).long()
        self.valid = torch.stack([valid[s: s + L + 1] for s in starts])  # (n, L + 1)

    def batch(self, rng: torch.Generator):
        B = self.cfg.batch_size
        if self.name == "lm":
            L = self.cfg.lm_len
            starts = torch.randint(0, self.train_tokens.numel() - L - 1, (B,), generator=rng)
            win = torch.stack([self.train_tokens[s: s + L + 1] for s in starts])
            return win[:, :-1], None, win[:, 1:]
        if self.name == "listops":
            idx = torch.randint(0, len(self.train_set.labels), (B,), generator=rng)
            return self.train_set.tokens[idx], self.train_set.mask[idx], self.train_set.labels[idx]
        idx = torch.randint(0, len(self.train_y), (B,), generator=rng)
        return self.train_x[idx], None, self.train_y[idx]

    def loss(self, model, batch):
        x, mask, y = batch
        if self.name == "lm":
            logits, _ = model(x, return_state=False)
            return F.cross_entropy(logits.flatten(0, 1), y.flatten())
        return F.cross_entropy(model(x, mask), y)

    @torch.no_grad()
    def evaluate(self, model) -> list[dict]:
        """[{mode, c, value}] at every sampling point of the task."""
        model.eval()
        try:
            return getattr(self, f"_eval_{self.name}")(model)
        finally:
            configure(model, dt_scale=1.0)
            model.train()

    def _eval_sines(self, model):
        out = []
        for c in self.cfg.rates:
            times, _ = sampling.uniform_times(len(self.test.label), c)
            configure(model, dt_scale=1.0 / c)
            out.append({"mode": "rate", "c": c, "value": _accuracy(model, self.test.at(times, np.random.default_rng(2)),
                                                                     None, torch.from_numpy(self.test.label))})
        configure(model, dt_scale=1.0)
        times, dt = sampling.jittered_times(len(self.test.label), self.cfg.jitter_sigma, np.random.default_rng(3))
        x, y = self.test.at(times, np.random.default_rng(2)), torch.from_numpy(self.test.label)
        dt = torch.from_numpy(dt).float()
        if all(getattr(b.mixer, "per_step_dt", False) for b in model.backbone.blocks):
            acc = _accuracy(model, x, None, y, dt=dt)  # the true gaps
        else:
            configure(model, dt_scale=float(dt.mean()))  # time-invariant: the mean step
            acc = _accuracy(model, x, None, y)
        return out + [{"mode": "jitter", "c": self.cfg.jitter_sigma, "value": acc}]

    def _eval_digits(self, model):
        out = []
        for r in self.cfg.resolutions:
            configure(model, dt_scale=1.0 / sampling.digit_rate(r))
            x = sampling.resample(self.test_images, r)
            out.append({"mode": "rate", "c": round(sampling.digit_rate(r), 3), "value": _accuracy(model, x, None, self.test_y)})
        return out

    def _eval_listops(self, model):
        out = []
        for c in self.cfg.holds:
            configure(model, dt_scale=1.0 / c)
            t = self.test_set
            out.append({"mode": "rate", "c": float(c),
                        "value": _accuracy(model, sampling.hold(t.tokens, c), sampling.hold(t.mask, c), t.labels)})
        return out

    def _eval_lm(self, model):
        out = []
        x, y = self.valid[:, :-1], self.valid[:, 1:]
        for c in self.cfg.holds:
            configure(model, dt_scale=1.0 / c)
            total = 0.0
            for xb, yb in zip(x.split(16), y.split(16)):
                logits, _ = model(sampling.hold(xb, c), return_state=False)
                last = logits[:, c - 1:: c]  # the prediction after the last copy of each byte
                total += F.cross_entropy(last.flatten(0, 1), yb.flatten(), reduction="sum").item()
            out.append({"mode": "rate", "c": float(c), "value": total / y.numel()})
        return out


def _accuracy(model, x, mask, y, dt=None, batch: int = 100) -> float:
    right = 0
    for i in range(0, len(y), batch):
        sl = slice(i, i + batch)
        logits = model(x[sl], None if mask is None else mask[sl], dt=None if dt is None else dt[sl])
        right += (logits.argmax(-1) == y[sl]).sum().item()
    return 100.0 * right / len(y)


def run_cell(cfg: SMRExperimentConfig, task: Task, core: str, smr: bool, seed: int, commit: str,
             on_step=None) -> list[dict]:
    """Train one model and evaluate it at every sampling point: one record per point."""
    torch.manual_seed(seed)
    model = build_model(cfg, task.name, core, smr)
    opt = adamw(model, cfg.lr, cfg.weight_decay)
    rng = torch.Generator().manual_seed(seed)
    warmup = max(1, cfg.steps // 10)
    t0, cpu0 = time.time(), time.process_time()
    for step in range(cfg.steps):
        set_lr(opt, lr_scale(step, warmup, cfg.steps, 0.1))
        loss = task.loss(model, task.batch(rng))
        if not math.isfinite(loss.item()):
            raise FloatingPointError(f"{task.name}/{core}/smr={smr}/seed {seed}: loss {loss.item()} at step {step}")
        loss.backward()
        optimizer_step(model, opt, 1.0)
        if on_step:
            on_step(step + 1, loss.item())
    cpu = time.process_time() - cpu0
    meta = {"task": task.name, "core": core, "smr": smr, "seed": seed, "metric": METRIC[task.name],
            "steps": cfg.steps, "train_seconds": round(time.time() - t0, 2), "cpu_ms_per_step": round(1000 * cpu / cfg.steps, 2),
            "params": count_parameters(model), "d_model": cfg.d_model, "final_train_loss": round(loss.item(), 4),
            "commit": commit}
    return [{**meta, **point} for point in task.evaluate(model)]
