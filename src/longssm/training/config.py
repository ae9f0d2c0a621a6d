"""Run configuration: [model], [data] and [train] tables of a TOML run file (plus --set overrides).

Every field has a docstring line; :func:`resolve` turns a nested dict into typed, validated configs
and errors name the offending key and what was allowed.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any, Mapping

from longssm.configs import build
from longssm.models import ModelConfig, get_preset

STATE_INITS = ("zero", "previous", "noise")


@dataclass(frozen=True)
class DataConfig:
    """Where the text comes from and how it is tokenised."""

    train: tuple[str, ...] = ("embedded",)
    """Training sources: files, folders, globs, prepared shard folders, hf:NAME, or 'embedded'."""
    valid: tuple[str, ...] = ()
    """Validation sources; empty: every 10th training document is held out instead."""
    tokenizer: str = "byte"
    """'byte', 'bpe' (trained on the training documents), or a path to a tokenizer.json."""
    bpe_vocab_size: int = 8192
    """Vocabulary size when training a BPE tokenizer."""
    encoding: str = "utf-8"
    """Text encoding of the source files (a Python codec name); the byte tokenizer takes raw bytes."""
    encoding_errors: str = "strict"
    """'strict': an undecodable byte is an error naming the file and offset; 'replace': U+FFFD, counted."""
    allow_binary: bool = False
    """Accept files that look binary (over 5% control characters other than whitespace)."""

    def __post_init__(self):
        from longssm.data.corpus import check_encoding

        try:
            check_encoding(self.encoding, self.encoding_errors)
        except ValueError as e:
            raise ValueError(f"data.encoding / data.encoding_errors: {e}") from None
    cache_dir: str = ""
    """Where prepared shards are kept and reused; empty: <train.out_dir>/data."""


PARALLEL = ("ddp", "fsdp")


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation, state initialisation, evaluation and checkpoint cadence."""

    steps: int = 1000
    """Optimiser steps."""
    batch_size: int = 16
    """Global rows per step (split across processes); ignored when tokens_per_step is set."""
    seq_len: int = 256
    """Tokens per row per step (the training segment length T)."""
    tokens_per_step: int = 0
    """If > 0, batch_size = tokens_per_step // seq_len: equal tokens per step at every T."""
    accumulate: int = 1
    """Micro-batches per step (gradient accumulation); divides the per-process batch."""
    lr: float = 1e-3
    """Peak learning rate (SSM parameters use their own hint, see layers.optim)."""
    min_lr_ratio: float = 0.1
    """Cosine decay floor as a fraction of the peak."""
    warmup_steps: int = 100
    """Linear warm-up steps."""
    weight_decay: float = 0.1
    """AdamW weight decay for matrices (vectors and SSM parameters get none)."""
    beta1: float = 0.9
    """AdamW beta1."""
    beta2: float = 0.95
    """AdamW beta2."""
    grad_clip: float = 1.0
    """Global gradient-norm clip; 0 disables."""
    state_init: str = "zero"
    """Initial hidden state of each segment: zero, previous (LongSSM: last segment's final state,
    detached, needs consecutive streams) or noise (Gaussian states)."""
    noise_std: float = 1.0
    """Standard deviation of the states when state_init = noise."""
    seed: int = 0
    """Seed of initialisation, data order, dropout and noise."""
    eval_every: int = 200
    """Evaluate on the validation split every this many steps (0: only at the end)."""
    eval_batches: int = 8
    """Validation batches per evaluation."""
    log_every: int = 10
    """Metrics line every this many steps."""
    checkpoint_every: int = 200
    """Write a checkpoint every this many steps (and at the end)."""
    keep_checkpoints: int = 2
    """Checkpoints kept on disk (oldest deleted first)."""
    max_minutes: float = 0.0
    """Stop (with a checkpoint) after this much wall time; 0: no limit."""
    out_dir: str = ""
    """Run folder: checkpoints, metrics.jsonl, prepared data; empty: a new runs/<preset>-<date>-<time>."""
    device: str = "auto"
    """auto (cuda if available), cpu or cuda."""
    precision: str = "auto"
    """auto (bf16 autocast on CUDA, fp32 on CPU), fp32 or bf16."""
    parallel: str = "ddp"
    """Under torchrun: ddp (each process holds the whole model) or fsdp (FSDP2: parameters,
    gradients and optimizer state sharded per block; checkpoints sharded through
    torch.distributed.checkpoint)."""
    activation_checkpointing: bool = False
    """Recompute each block's activations in backward instead of keeping them (less memory, one
    more forward per block)."""

    def __post_init__(self):
        if self.state_init not in STATE_INITS:
            raise ValueError(f"train.state_init must be one of {STATE_INITS}, got {self.state_init!r}")
        for name in ("steps", "batch_size", "seq_len", "accumulate"):
            if getattr(self, name) < 1:
                raise ValueError(f"train.{name} must be >= 1, got {getattr(self, name)}")
        if self.tokens_per_step and self.tokens_per_step % self.seq_len:
            raise ValueError(f"train.tokens_per_step={self.tokens_per_step} must be a multiple of "
                             f"train.seq_len={self.seq_len}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"train.device must be auto, cpu or cuda, got {self.device!r}")
        if self.precision not in ("auto", "fp32", "bf16"):
            raise ValueError(f"train.precision must be auto, fp32 or bf16, got {self.precision!r}")
        if self.parallel not in PARALLEL:
            raise ValueError(f"train.parallel must be one of {PARALLEL}, got {self.parallel!r}")

    @property
    def global_batch(self) -> int:
        return self.tokens_per_step // self.seq_len if self.tokens_per_step else self.batch_size


@dataclass(frozen=True)
class RunConfig:
    model: Mapping[str, Any] = field(default_factory=lambda: {"preset": "tiny-hybrid"})
    data: DataConfig = DataConfig()
    train: TrainConfig = TrainConfig()

    def model_config(self, vocab_size: int) -> ModelConfig:
        """The model config: a preset (if named) with the [model] table's fields over it."""
        fields = dict(self.model)
        preset = fields.pop("preset", None)
        base = get_preset(preset, vocab_size).to_dict() if preset else {"vocab_size": vocab_size}
        base.update(fields)
        base["vocab_size"] = vocab_size
        cfg = build(ModelConfig, base, "model")
        return cfg

    def to_dict(self) -> dict[str, Any]:
        return {"model": dict(self.model), "data": dataclasses.asdict(self.data),
                "train": dataclasses.asdict(self.train)}


def with_absolute_paths(run: RunConfig) -> RunConfig:
    """The same run with its file paths absolute (data sources, cache and run folder), so its
    records work from any folder (``embedded`` and ``hf:`` sources are not paths)."""
    absolute = lambda p: p if (not p or p == "embedded" or p.startswith("hf:")) else os.path.abspath(p)
    data = dataclasses.replace(run.data, train=tuple(map(absolute, run.data.train)),
                               valid=tuple(map(absolute, run.data.valid)), cache_dir=absolute(run.data.cache_dir))
    return dataclasses.replace(run, data=data, train=dataclasses.replace(run.train, out_dir=absolute(run.train.out_dir)))


#: Keys that may change when a run is resumed: they extend it or change what it reports and when,
#: not what it computes. Any other difference from the recorded run is refused.
SAFE_ON_RESUME = ("train.steps", "train.log_every", "train.eval_every", "train.eval_batches",
                  "train.checkpoint_every", "train.keep_checkpoints", "train.max_minutes", "train.device",
                  "train.out_dir", "train.parallel", "train.activation_checkpointing")


def _flat(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        if isinstance(v, Mapping) and not (prefix == "model." and k == "mixer_options"):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def resume_config(recorded: Mapping[str, Any], requested: Mapping[str, Any], run_dir: str) -> RunConfig:
    """The run recorded in a checkpoint, continued in ``run_dir``, with the ``requested`` changes
    (a nested dict from --config / --set) that :data:`SAFE_ON_RESUME` allows; any other change is
    an error naming the keys (another corpus, model, tokenizer, seed, batch or schedule would make
    the resumed steps a different run)."""
    merged = _deep_merge(recorded, requested)
    merged.setdefault("train", {})["out_dir"] = str(run_dir)
    old, new = _flat(resolve(recorded).to_dict()), _flat(resolve(merged).to_dict())
    changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k) and k not in SAFE_ON_RESUME)
    if changed:
        raise ValueError(f"--resume: {', '.join(changed)} differ from the recorded run in {run_dir}; a resumed run "
                         f"can only change {', '.join(k for k in SAFE_ON_RESUME if k != 'train.out_dir')} "
                         f"(start a new run for the rest)")
    return resolve(merged)


def _deep_merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in base.items()}
    for k, v in over.items():
        out[k] = _deep_merge(out.get(k, {}), v) if isinstance(v, Mapping) and isinstance(out.get(k), Mapping) else v
    return out


def resolve(raw: Mapping[str, Any]) -> RunConfig:
    """Typed RunConfig from a nested dict (TOML file merged with overrides)."""
    unknown = sorted(set(raw) - {"model", "data", "train"})
    if unknown:
        raise ValueError(f"unknown section(s) {unknown}; allowed: model, data, train")
    model = dict(raw.get("model", {"preset": "tiny-hybrid"}))
    if "vocab_size" in model:
        raise ValueError("model.vocab_size is set by the tokenizer; remove it from the config")
    cfg = RunConfig(model, build(DataConfig, raw.get("data", {}), "data"),
                    build(TrainConfig, raw.get("train", {}), "train"))
    cfg.model_config(256)  # validate the model table now, not after data preparation
    return cfg
