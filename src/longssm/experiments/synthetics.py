"""The H3 paper's synthetic-language experiment (section 3.1, Table 2), plus MQAR.

2-layer models of width 32 (MLP 128) trained with AdamW (lr 5e-4, weight decay 0.1, batch 32) on
5,000 examples, next-token loss on every position, accuracy on the scored positions of 500 held-out
examples, early stopping once test accuracy has been 100% for ``patience`` epochs. As in the
reference configs (safari ``synthetics/*/base.yaml``): up to 400 epochs, linear warm-up over the
first 10% of them, cosine decay to 0.1x, embedding dropout 0.1. One optional addition, to save
time (off by default): a cell still below 90% also stops once ``plateau`` epochs past warm-up
bring no new best test accuracy by ``min_gain`` points. Attention learns induction in a late jump
(one seed at epoch 178, another not by 400), so a plateau stop can cut it at chance. The record
says why a cell stopped: ``solved``, ``plateau`` or ``max_epochs``.
"""

from __future__ import annotations

import math
import subprocess
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from longssm.data.synthetic import TRAIN_EXAMPLES, TaskData
from longssm.experiments.records import read_records
from longssm.models import LanguageModel, ModelConfig, model_config as build_model_config
from longssm.models.presets import SYNTHETIC_MODELS as MODELS
from longssm.training.optim import adamw, lr_scale, optimizer_step, set_lr

#: H3 paper, Table 2 (test accuracy %, 2 layers).
PAPER = {("induction_head", "s4d"): 35.6, ("induction_head", "h3"): 100.0, ("induction_head", "attention"): 100.0,
         ("associative_recall", "s4d"): 86.0, ("associative_recall", "h3"): 99.8,
         ("associative_recall", "attention"): 100.0}


@dataclass(frozen=True)
class SyntheticConfig:
    """Training of one synthetic cell (the reference's schedule; ``longssm synthetics --help``)."""

    d_model: int = 32
    """Model width (the paper's: 32; MQAR sweeps several)."""
    lr: float = 5e-4
    """AdamW peak learning rate; every SSM's own learning rate is min(1e-3, lr), as in the reference."""
    weight_decay: float = 0.1
    """AdamW weight decay of matrices."""
    batch_size: int = 32
    """Examples per step."""
    max_epochs: int = 400
    """Epoch cap, and the length of the cosine schedule."""
    warmup_fraction: float = 0.1
    """Linear warm-up over this fraction of all steps."""
    min_lr_ratio: float = 0.1
    """Cosine decay floor as a fraction of the peak."""
    embed_dropout: float = 0.1
    """Dropout on the embedding (residual dropout 0)."""
    patience: int = 3
    """Epochs at 100% test accuracy before stopping."""
    plateau: int = 0
    """Stop a cell below 90% after this many epochs past warm-up without a new best (0: never)."""
    min_gain: float = 2.0
    """Points of test accuracy that count as a new best (noise is about 1 point)."""
    compile: bool = False
    """torch.compile each cell's model: 1.15-1.2x faster steps for S4D and H3, none for attention and
    Mamba (``longssm bench step``); for Mamba use ``LONGSSM_BACKEND=native`` (2.4x)."""


def model_config(model: str, vocab_size: int, seq_len: int, d_model: int, lr: float = 5e-4) -> ModelConfig:
    """The 2-layer model of row ``model`` (from the model table, ``SYNTHETIC_MODELS``)."""
    if model not in MODELS:
        raise ValueError(f"unknown model {model!r}; expected one of {', '.join(MODELS)}")
    arch, kw = MODELS[model]
    return build_model_config(arch, vocab_size=vocab_size, d_model=d_model, n_layer=2, max_seq_len=seq_len,
                              ssm_lr=min(1e-3, lr), **kw)


@torch.no_grad()
def accuracy(model: LanguageModel, seqs: torch.Tensor, mask: torch.Tensor, batch: int = 500) -> float:
    """Percent of scored positions whose argmax prediction is the target."""
    model.eval()
    right = total = 0
    for s, m in zip(seqs.split(batch), mask.split(batch)):
        logits, _ = model(s[:, :-1], return_state=False)
        right += (logits.argmax(-1) == s[:, 1:])[m].sum().item()
        total += m.sum().item()
    model.train()
    return 100.0 * right / total


def run_cell(task: TaskData, model_name: str, seed: int, cfg: SyntheticConfig, on_epoch=None,
             commit: str | None = None) -> dict:
    """Train one model on one task with one seed; returns the record for results/synthetics.json."""
    torch.manual_seed(seed)
    seq_len = task.train.shape[1] - 1
    model = LanguageModel(model_config(model_name, task.vocab_size, seq_len, cfg.d_model, cfg.lr))
    model.backbone.drop.p = cfg.embed_dropout  # dropout on the embedding only (residual dropout 0)
    opt = adamw(model, cfg.lr, cfg.weight_decay, fused=True)  # one fused kernel per group: the step is dispatch-bound
    if cfg.compile:
        model.compile()  # in place: parameter names and the records stay as without it
    steps_per_epoch = -(-task.train.shape[0] // cfg.batch_size)
    total = cfg.max_epochs * steps_per_epoch
    warmup = max(1, int(cfg.warmup_fraction * total))  # in steps: a 3-epoch MQAR schedule still warms up
    step = 0
    g = torch.Generator().manual_seed(seed)
    t0, cpu0, streak, test_acc, epoch, best, best_epoch = time.time(), time.process_time(), 0, 0.0, 0, -math.inf, 0
    warmup_epochs = int(cfg.warmup_fraction * cfg.max_epochs)
    stop = "max_epochs"
    for epoch in range(1, cfg.max_epochs + 1):
        order = torch.randperm(task.train.shape[0], generator=g)
        for idx in order.split(cfg.batch_size):
            s = task.train[idx]
            set_lr(opt, lr_scale(step, warmup, total, cfg.min_lr_ratio))
            step += 1
            logits, _ = model(s[:, :-1], return_state=False)
            target = s[:, 1:]
            if task.loss_on_scored:
                target = target.masked_fill(~task.train_mask[idx], -100)  # cross_entropy's ignore_index
            loss = F.cross_entropy(logits.flatten(0, 1), target.flatten())
            loss.backward()
            optimizer_step(model, opt)
        test_acc = accuracy(model, task.test, task.test_mask)
        if on_epoch:
            on_epoch(epoch, loss.item(), test_acc)
        streak = streak + 1 if test_acc == 100.0 else 0
        if test_acc >= best + cfg.min_gain:
            best, best_epoch = test_acc, epoch
        if streak >= cfg.patience:
            stop = "solved"
            break
        stalled = epoch >= warmup_epochs + cfg.plateau and epoch - best_epoch >= cfg.plateau
        if cfg.plateau and best < 90.0 and stalled:  # near-solved cells keep going: their gains are small
            stop = "plateau"
            break
    return {"task": task.name, "model": model_name, "seed": seed, "test_accuracy": test_acc,
            "train_accuracy": accuracy(model, task.train, task.train_mask),
            "epochs": epoch, "stopped": stop, "max_epochs": cfg.max_epochs,
            "seconds": time.time() - t0, "cpu_seconds": time.process_time() - cpu0,
            "d_model": cfg.d_model, "seq_len": seq_len, "train_examples": task.train.shape[0],
            "commit": commit or current_commit(), **_overrides(cfg)}


#: Keys that change what a cell trains (beyond width and epochs, which records carry anyway).
_HYPER = ("lr", "weight_decay", "batch_size", "warmup_fraction", "min_lr_ratio", "embed_dropout")


def _overrides(cfg: SyntheticConfig) -> dict:
    """``{"overrides": {key: value}}`` for the training keys set away from their defaults (none: {})."""
    default = SyntheticConfig()
    changed = {k: getattr(cfg, k) for k in _HYPER if getattr(cfg, k) != getattr(default, k)}
    return {"overrides": changed} if changed else {}


def current_commit() -> str:
    """Short hash of HEAD, with ``+dirty`` when tracked files under ``src/`` differ from it (results
    written meanwhile by another run do not count), ``unknown`` outside git."""
    try:
        run = lambda *a: subprocess.run(["git", *a], capture_output=True, text=True, timeout=5).stdout.strip()
        head = run("rev-parse", "--short", "HEAD")
        dirty = run("status", "--porcelain", "--untracked-files=no", "--", ":/src")
        return (head + ("+dirty" if dirty else "")) if head else "unknown"
    except OSError:
        return "unknown"


def load_records(path) -> list[dict]:
    """The records of a results file (none if it does not exist). Records written before
    ``train_examples`` was recorded all trained on the tasks' 5,000 examples. A file that is not a
    list of records is an error naming it, raised before any training starts."""
    records = read_records(path, {"task", "model", "seed"}, "synthetics")
    for r in records:
        r.setdefault("train_examples", TRAIN_EXAMPLES)
    return records


def _cell_key(r: dict) -> tuple:
    """What a cell is, seeds aside: (task, model, d_model, seq_len, pairs, training examples, and the
    training keys set away from their defaults)."""
    return (r["task"], r["model"], r.get("d_model"), r.get("seq_len"), r.get("pairs"), r["train_examples"],
            tuple(sorted(r.get("overrides", {}).items())))


def merge_records(old: list[dict], new: list[dict]) -> list[dict]:
    """New records replace old ones of the same cell (:func:`_cell_key`) and seed."""
    key = lambda r: (*_cell_key(r), r["seed"])
    merged = {key(r): r for r in old}
    merged.update({key(r): r for r in new})
    return sorted(merged.values(), key=lambda r: (r["task"], r["model"], r.get("d_model", 0), r.get("seq_len", 0), r["seed"]))


_STOP_MARK = {"plateau": "p", "max_epochs": "m"}


def _mean_std(accs: list[float]) -> str:
    import statistics

    if len(accs) == 1:
        return f"{accs[0]:.1f}"  # one seed: no spread to report
    return f"{statistics.mean(accs):.1f} ± {statistics.stdev(accs):.1f}"


def summary(records: list[dict]) -> str:
    """The paper's table: a row per model (in MODELS order), test accuracy mean ± std (seeds) per
    H3 task at width 32, the paper's number beside it."""
    tasks = ("induction_head", "associative_recall")
    lines = ["| test accuracy % | induction head | associative recall |", "|---|---:|---:|"]
    for model in MODELS:
        cells = []
        for task in tasks:
            accs = [r["test_accuracy"] for r in records
                    if (r["task"], r["model"], r.get("d_model", 32)) == (task, model, 32) and not r.get("overrides")]
            paper = PAPER.get((task, model))
            cell = f"{_mean_std(accs)} ({len(accs)} seed{'s' * (len(accs) > 1)})" if accs else "not run"
            cells.append(cell + ("" if paper is None else f" · paper {paper:.1f}"))
        if any(c != "not run" for c in cells):
            lines.append(f"| {model} | {' | '.join(cells)} |")
    return "\n".join(lines) + "\n"


def report(records: list[dict]) -> str:
    """Markdown: the paper's table (:func:`summary`), then every (task, model, width, length) with
    test and training accuracy (mean +- std over seeds: a gap between them is memorisation, not a
    failure to fit), epochs per seed and the commits that ran them."""
    groups: dict[tuple, list[dict]] = {}
    for r in records:
        groups.setdefault(_cell_key(r), []).append(r)
    lines = ["# Synthetic recall (H3 paper, section 3.1, Table 2)", "",
             "Test accuracy on the scored tokens (the last token for induction head and associative "
             "recall, every query for MQAR) of 2-layer models, `longssm synthetics`; the paper's "
             "numbers beside ours. Epochs per seed: until 100% test accuracy for 3 epochs, or "
             "p = stopped by `--plateau 100` (below 90% after 100 epochs past warm-up without a 2-point "
             "gain), m = the epoch cap (400 as in the reference; 150 for `--quick`, whose schedule is "
             "scaled to it; the MQAR cap is in its rows' epochs).", "",
             summary(records), "Every cell:", "",
             "| task | model | d_model | seq_len | pairs | train examples | test accuracy % (mean ± std) "
             "| train accuracy % | seeds | epochs | paper | CPU s/epoch | commit |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for (task, model, d, L, P, n_train, over), rs in sorted(groups.items(), key=lambda kv: tuple(str(k) for k in kv[0])):
        if over:  # trained away from the default schedule: say how, beside the model
            model = f"{model} ({', '.join(f'{k}={v}' for k, v in over)})"
        paper = PAPER.get((task, model))
        epochs = "/".join(f"{r['epochs']}{_STOP_MARK.get(r.get('stopped'), '')}" for r in rs)
        commits = ",".join(sorted({r.get("commit", "?") for r in rs}))
        cpu = [r["cpu_seconds"] / r["epochs"] for r in rs if "cpu_seconds" in r]  # wall seconds depend on the load
        test, train = (_mean_std([r[k] for r in rs]) for k in ("test_accuracy", "train_accuracy"))
        lines.append(f"| {task} | {model} | {d} | {L} | {P or ''} | {n_train:,} | {test} | {train} | {len(rs)} | "
                     f"{epochs} | {'' if paper is None else f'{paper:.1f}'} | "
                     f"{f'{sum(cpu) / len(cpu):.2f}' if cpu else ''} | {commits} |")
    return "\n".join(lines) + "\n"


def plot_mqar(records: list[dict], path) -> None:
    """Zoology-style figure: MQAR test accuracy against d_model, one panel per (sequence length,
    pairs, training examples), a line per model (mean over seeds)."""
    import statistics

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    acc: dict[tuple, list[float]] = {}
    for r in records:
        if r["task"] == "mqar":
            acc.setdefault((r["seq_len"], r["pairs"], r["train_examples"], r["model"], r["d_model"]), []).append(
                r["test_accuracy"])
    shapes = sorted({k[:3] for k in acc})
    models = sorted({k[3] for k in acc})
    fig, axes = plt.subplots(1, len(shapes), figsize=(4.5 * len(shapes), 3.8), squeeze=False, sharey=True)
    for ax, (L, P, n) in zip(axes[0], shapes):
        for i, m in enumerate(models):
            ds = sorted(d for (*shape, mm, d) in acc if (*shape, mm) == (L, P, n, m))
            ax.plot(ds, [statistics.mean(acc[(L, P, n, m, d)]) for d in ds], marker="o", color=plt.cm.tab10(i), label=m)
        ax.set_xscale("log", base=2)
        ax.set_title(f"seq_len {L}, {P} pairs, {n:,} training examples", fontsize=10)
        ax.set_xlabel("d_model")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("test accuracy on queries (%)")
    axes[0][0].legend()
    fig.suptitle("Multi-query associative recall (2 layers), `longssm synthetics --task mqar`")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
