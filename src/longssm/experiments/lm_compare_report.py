"""The language-model comparison's report (markdown) and plot, from its records alone."""

from __future__ import annotations

import dataclasses
import json
import statistics
from pathlib import Path

from longssm.experiments.lm_compare import PAPER_PPL, LMCompareConfig, curve_tokens

ORDER = ("hybrid", "transformer", "h3", "s4d", "mamba")


def report_header(cfg: LMCompareConfig, *, quick: bool = False) -> str:
    """The report's title and protocol: data, tokenizer, models and every setting of the grid
    (``lrs`` only without the sweep: with it, each model's final runs take its best sweep rate)."""
    settings = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in ("train", "valid", "runs_dir")}
    if cfg.sweep:
        del settings["lrs"]
    return ("# Language models on Gutenberg: S4D, H3, Transformer, H3-attention hybrid, Mamba\n\n"
            f"`longssm experiment lm-compare{' --quick' if quick else ''}`: H3 paper section 5.2 / Table 3 at "
            f"CPU scale. Training books `{'`, `'.join(cfg.train)}`, validation books `{'`, `'.join(cfg.valid)}`, "
            f"a byte-level BPE of {cfg.bpe_vocab_size:,} tokens trained on the training books; every model sees the "
            "same tokens in the same order with the same schedule. Models: `LM_COMPARE_MODELS` in "
            "`longssm.models.presets` (Transformer with rotary positions). Settings: `" + json.dumps(settings) + "`."
            + (" Each model's final runs use its best sweep rate (the lr column)." if cfg.sweep else "")
            + f" The plot's curves are the training loop's validation every {cfg.eval_every} steps on the first "
            f"{curve_tokens(cfg):,} validation tokens; the table scores each run at its end on "
            + ("every validation token" if cfg.eval_tokens is None else f"the first {cfg.eval_tokens:,}") + ".")


def _final(records: list[dict]) -> dict[str, list[dict]]:
    """The final runs per model, at the most common step count (a grid changed mid-way keeps its
    other runs in the file but out of the table)."""
    finals = [r for r in records if r["phase"] == "final"]
    if not finals:
        return {}
    steps = statistics.mode(r["steps"] for r in finals)
    by: dict[str, list[dict]] = {}
    for r in finals:
        if r["steps"] == steps:
            by.setdefault(r["model"], []).append(r)
    return by


def _mean_std(values: list[float], fmt: str) -> str:
    if len(values) == 1:
        return format(values[0], fmt)
    return f"{format(statistics.mean(values), fmt)} ± {format(statistics.stdev(values), fmt)}"


def ordering(by: dict[str, list[dict]]) -> list[str]:
    """Models from lowest to highest mean validation loss."""
    return sorted(by, key=lambda m: statistics.mean(r["val_loss"] for r in by[m]))


def _gaps(by: dict[str, list[dict]], order: list[str]) -> str:
    """Each model against the next in the ordering: the gap in mean validation loss, and whether
    their seeds' losses overlap (a gap inside the seed-to-seed spread is not a ranking). Where
    either model has one seed there is no spread to compare: the verdict waits."""
    parts = []
    for a, b in zip(order, order[1:]):
        la, lb = [r["val_loss"] for r in by[a]], [r["val_loss"] for r in by[b]]
        if min(len(la), len(lb)) < 2:
            verdict = "one seed: no spread to compare yet"
        else:
            verdict = "every seed apart" if max(la) < min(lb) else "seed ranges overlap"
        parts.append(f"{a} < {b} by {statistics.mean(lb) - statistics.mean(la):.4f} nats ({verdict})")
    return "Neighbours in that ordering: " + "; ".join(parts) + "."


def _first_scores(by: dict[str, list[dict]]) -> list[str]:
    """For final runs scored again on more validation tokens (``rescore``): their first scores
    beside the table's, and the ordering those gave."""
    firsts = {m: [r["first_val_loss"] for r in rs if "first_val_loss" in r] for m, rs in by.items()}
    if not any(firsts.values()):
        return []
    tokens = sorted({r["first_val_tokens"] for rs in by.values() for r in rs if "first_val_loss" in r})
    lines = ["", f"First scores: these runs were first scored on the first {' / '.join(f'{n:,}' for n in tokens)} "
                 "validation tokens (the grid's first `eval_tokens`), then again from their saved weights on "
                 "the tokens above; the table has the second.", "",
             "| model | runs scored twice | first score | table's score (same runs) |", "|---|---:|---:|---:|"]
    for m in ordering(by):
        twice = [r for r in by[m] if "first_val_loss" in r]
        if twice:
            lines.append(f"| {m} | {len(twice)} | {_mean_std([r['first_val_loss'] for r in twice], '.4f')} | "
                         f"{_mean_std([r['val_loss'] for r in twice], '.4f')} |")
    first_order = sorted((m for m in by if firsts[m]), key=lambda m: statistics.mean(firsts[m]))
    return lines + ["", f"Ordering by the first scores: {' < '.join(first_order)}."]


def report(records: list[dict], header: str) -> str:
    by = _final(records)
    lines = [header, ""]
    if by:
        lines += ["## Final runs", "",
                  "| model | seeds | lr | non-embedding params | params | tokens | val loss (nats/token) | val ppl | "
                  "tokens/s | peak MB | paper ppl (125M, OpenWebText) |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for m in sorted(by, key=lambda m: ORDER.index(m) if m in ORDER else len(ORDER)):
            rs = by[m]
            lines.append(
                f"| {m} | {len(rs)} | {rs[0]['lr']:g} | {rs[0]['non_embedding_params']:,} | {rs[0]['params']:,} | "
                f"{rs[0]['train_tokens']:,} | {_mean_std([r['val_loss'] for r in rs], '.4f')} | "
                f"{_mean_std([r['val_ppl'] for r in rs], '.2f')} | {_mean_std([r['tokens_per_s'] for r in rs], ',.0f')} | "
                f"{max(r['peak_mb'] for r in rs):.0f} | {PAPER_PPL.get(m, '—')} |")
        order = ordering(by)
        paper = [m for m in ("hybrid", "transformer", "h3", "s4d") if m in by]
        ours = [m for m in order if m in paper]
        verdict = (f"among the models run here it {'holds' if ours == paper else 'does not hold'} ({' < '.join(ours)})"
                   if len(ours) > 1 else "too few of its models have final runs yet to compare")
        lines += ["", f"Ordering here (lowest loss first): {' < '.join(order)}. The paper's: hybrid < transformer < "
                      f"h3 < s4d; {verdict}."]
        if len(order) > 1:
            lines += ["", _gaps(by, order)]
        scored = sorted({r.get("val_tokens") for rs in by.values() for r in rs}, key=str)
        lines += ["", "Mean ± standard deviation over seeds; validation: zero-state windows of the training length "
                      f"on the validation books, {' / '.join(format(n, ',') if n else '?' for n in scored)} tokens "
                      "from their start; tokens/s: the run's training throughput (median of its 10-step logging "
                      "intervals, so pauses and evaluations do not count) on its torch threads "
                      f"({by[order[0]][0].get('threads', '?')} per run) while other runs shared the machine, so not a "
                      "speed comparison (`longssm bench train` is one); peak MB: the run's process peak resident memory (VmHWM, CPU)."]
        native = sorted({m for m, rs in by.items() for r in rs if r.get("backend") == "native"})
        if native:
            lines += ["", f"Runs of {', '.join(native)} used the `native` kernel backend (`LONGSSM_BACKEND=native`): "
                          "for Mamba the selective scan runs as the fused C++ kernel, the same function as the "
                          "default path (checked to 1e-12 in float64); the other models' ops are the default ones "
                          "(the backend's C++ linear layer takes only calls of at most 128 rows without gradients, "
                          "which training and this evaluation never make)."]
        lines += _first_scores(by)
    sweep = [r for r in records if r["phase"] == "sweep"]
    if sweep:
        lrs = sorted({r["lr"] for r in sweep})
        lines += ["", "## Learning-rate sweep", "",
                  f"Seed 0, {sweep[0]['steps']} steps ({sweep[0]['train_tokens']:,} tokens) per run; validation loss "
                  f"(nats/token) on the first {' / '.join(sorted({format(r.get('val_tokens') or 0, ',') for r in sweep}))} "
                  "validation tokens; the lowest of each row (bold) is that model's rate in the final runs.", "",
                  "| model | " + " | ".join(f"lr {lr:g}" for lr in lrs) + " |", "|---|" + "---:|" * len(lrs)]
        for m in sorted({r["model"] for r in sweep}, key=lambda m: ORDER.index(m) if m in ORDER else len(ORDER)):
            row = {r["lr"]: r["val_loss"] for r in sweep if r["model"] == m}
            best = min(row.values())
            cell = lambda v: "" if v is None else (f"**{v:.4f}**" if v == best else f"{v:.4f}")
            lines.append(f"| {m} | " + " | ".join(cell(row.get(lr)) for lr in lrs) + " |")
    return "\n".join(lines) + "\n"


def plot(records: list[dict], path: Path, curve_tokens: int | None = None) -> None:
    """Left: validation loss against training tokens, one line per model (mean over seeds, the band
    between the lowest and highest seed); ``curve_tokens``: the validation tokens behind each point.
    Right: the table's end-of-run score of every seed (dots) and their mean (bar), models from best
    to worst."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by = _final(records)
    if not by:
        return
    fig, (ax, scores) = plt.subplots(1, 2, figsize=(11, 4.5), gridspec_kw={"width_ratios": (2, 1)})
    colors = {}
    for m in sorted(by, key=lambda m: ORDER.index(m) if m in ORDER else len(ORDER)):
        points: dict[int, list[float]] = {}
        for r in by[m]:
            for tokens, loss in r["curve"]:
                points.setdefault(tokens, []).append(loss)
        xs = sorted(points)
        line, = ax.plot(xs, [statistics.mean(points[x]) for x in xs],
                        label=f"{m} ({len(by[m])} seed{'s' * (len(by[m]) > 1)})")
        colors[m] = line.get_color()
        if len(by[m]) > 1:
            ax.fill_between(xs, [min(points[x]) for x in xs], [max(points[x]) for x in xs],
                            color=line.get_color(), alpha=0.2, linewidth=0)
    ax.set_xlabel("training tokens")
    ax.set_ylabel("validation loss (nats/token)" + (f"\nfirst {curve_tokens:,} validation tokens" if curve_tokens else ""))
    ax.set_title("Gutenberg, BPE 8K: validation loss while training")
    ax.grid(alpha=0.3)
    ax.legend()
    for i, m in enumerate(ordering(by)):
        losses = [r["val_loss"] for r in by[m]]
        scores.hlines(statistics.mean(losses), i - 0.3, i + 0.3, color=colors[m], linewidth=2)
        scores.plot([i] * len(losses), losses, "o", color=colors[m], alpha=0.7)
    scores.set_xticks(range(len(by)), ordering(by), rotation=30, ha="right")
    scores.set_ylabel("validation loss (nats/token), end of run")
    scores.set_title("every seed (dots) and the mean (bar)")
    scores.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
