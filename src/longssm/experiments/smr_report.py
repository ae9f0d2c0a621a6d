"""The SMR report: tables of the metric at every sampling factor with and without SMR (mean ±
std over seeds), the cost in time per step, the findings computed from the numbers, and the plot
of the metric against c (one panel per task and core)."""

from __future__ import annotations

import statistics
from pathlib import Path

#: Published ListOps test accuracy (Long Range Arena, full length 500-2000 tokens): Transformer
#: from Tay et al. 2021 (Table 1), S4 from Gu et al. 2022 (S4 paper, Table 4, final version).
LISTOPS_PUBLISHED = {"Transformer (LRA Table 1)": 36.37, "S4 (S4 paper Table 4)": 59.60}
HIGHER_IS_BETTER = {"accuracy": True, "loss": False}


def _groups(records):
    g: dict[tuple, list[float]] = {}
    for r in records:
        g.setdefault((r["task"], r["core"], bool(r["smr"]), r["mode"], float(r["c"])), []).append(r["value"])
    return g


def _fmt(vals, digits):
    if not vals:
        return "not run"
    m = statistics.mean(vals)
    return f"{m:.{digits}f}" if len(vals) == 1 else f"{m:.{digits}f} ± {statistics.stdev(vals):.{digits}f}"


def findings(records) -> list[str]:
    """Per task and core: at how many off-training sampling points SMR is better than without,
    and the mean change there; the change at c = 1; the time-per-step cost."""
    g, lines = _groups(records), []
    cost: dict[tuple, list[float]] = {}
    for r in records:
        cost.setdefault((r["task"], r["core"], bool(r["smr"])), []).append(r["cpu_ms_per_step"])
    for task, core in sorted({(k[0], k[1]) for k in g}):
        metric = next(r["metric"] for r in records if r["task"] == task)
        sign = 1 if HIGHER_IS_BETTER[metric] else -1
        points = sorted({(k[3], k[4]) for k in g if k[:2] == (task, core)})
        deltas = {}
        for mode, c in points:
            off, on = g.get((task, core, False, mode, c)), g.get((task, core, True, mode, c))
            if off and on:
                deltas[(mode, c)] = sign * (statistics.mean(on) - statistics.mean(off))
        if not deltas:
            continue
        away = {k: v for k, v in deltas.items() if k != ("rate", 1.0)}
        better = sum(v > 0 for v in away.values())
        t_off, t_on = (statistics.mean(cost.get((task, core, s), [float("nan")])) for s in (False, True))
        unit = "points" if metric == "accuracy" else "nats"
        lines.append(
            f"- **{task} / {core}**: SMR's gain in {metric} (positive = SMR better) at c = 1: "
            f"{deltas.get(('rate', 1.0), float('nan')):+.3f} {unit}; away from the training rate SMR is better at "
            f"{better} of {len(away)} points (mean gain {statistics.mean(away.values()) if away else float('nan'):+.3f} "
            f"{unit}); CPU time per training step {t_off:.0f} -> {t_on:.0f} ms ({t_on / t_off:.2f}x).")
    return lines


def report(records, header: str) -> str:
    g = _groups(records)
    lines = [header, ""]
    for task in [t for t in ("sines", "digits", "listops", "lm") if any(r["task"] == t for r in records)]:
        metric = next(r["metric"] for r in records if r["task"] == task)
        digits = 1 if metric == "accuracy" else 3
        lines += [f"## {task} ({metric}{' %' if metric == 'accuracy' else ', nats/byte'})", "",
                  "| core | sampling | c | without SMR | with SMR | with - without |", "|---|---|---:|---:|---:|---:|"]
        for core in sorted({k[1] for k in g if k[0] == task}):
            for mode, c in sorted({(k[3], k[4]) for k in g if k[:2] == (task, core)}, key=lambda p: (p[0] != "rate", p[1])):
                off, on = g.get((task, core, False, mode, c), []), g.get((task, core, True, mode, c), [])
                change = f"{statistics.mean(on) - statistics.mean(off):+.{digits}f}" if off and on else ""
                label = "rate" if mode == "rate" else f"jitter sigma={c:g}"
                lines.append(f"| {core} | {label} | {c:g} | {_fmt(off, digits)} | {_fmt(on, digits)} | {change} |"
                             if mode == "rate" else f"| {core} | {label} | | {_fmt(off, digits)} | {_fmt(on, digits)} | {change} |")
        if task == "listops":
            lines += ["", "Published ListOps accuracy (full LRA lengths 500-2000, larger models, long training): "
                      + ", ".join(f"{k} {v:.2f}" for k, v in LISTOPS_PUBLISHED.items()) + "."]
        lines.append("")
    lines += ["## Findings (computed from the numbers above)", ""] + findings(records)
    seeds = sorted({r["seed"] for r in records})
    commits = sorted({r.get("commit", "?") for r in records})
    lines += ["", f"Seeds: {', '.join(map(str, seeds))}. Code: {', '.join(commits)}."]
    return "\n".join(lines) + "\n"


def plot(records, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    g = _groups(records)
    tasks = [t for t in ("sines", "digits", "listops", "lm") if any(r["task"] == t for r in records)]
    cores = sorted({r["core"] for r in records})
    fig, axes = plt.subplots(len(tasks), len(cores), figsize=(3.6 * len(cores), 3.0 * len(tasks)), squeeze=False)
    for i, task in enumerate(tasks):
        metric = next(r["metric"] for r in records if r["task"] == task)
        for j, core in enumerate(cores):
            ax = axes[i][j]
            for smr, color in ((False, "tab:blue"), (True, "tab:red")):
                cs = sorted(k[4] for k in g if k[:4] == (task, core, smr, "rate"))
                if not cs:
                    continue
                vals = [g[(task, core, smr, "rate", c)] for c in cs]
                means = [statistics.mean(v) for v in vals]
                errs = [statistics.stdev(v) if len(v) > 1 else 0.0 for v in vals]
                ax.errorbar(cs, means, yerr=errs, marker="o", ms=3, capsize=2, color=color,
                            label="with SMR" if smr else "without SMR")
            ax.set_xscale("log", base=2)
            ax.axvline(1.0, color="grey", lw=0.5)
            ax.set_title(f"{task} / {core}", fontsize=9)
            ax.grid(alpha=0.3)
            if j == 0:
                ax.set_ylabel("accuracy %" if metric == "accuracy" else "loss (nats/byte)")
            if i == len(tasks) - 1:
                ax.set_xlabel("sampling factor c (steps scaled by 1/c)")
            if i == 0 and j == 0:
                ax.legend(fontsize=7)
    fig.suptitle("Sampling-step robustness with and without State Memory Replay (mean ± std over seeds)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
