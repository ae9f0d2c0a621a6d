"""``longssm synthetics``: one cell or the whole grid of the H3 paper's synthetic table."""

from __future__ import annotations

import json
from pathlib import Path

from tqdm import tqdm

QUICK = {"tasks": ["induction_head", "associative_recall"], "models": ["h3", "s4d", "attention"], "seeds": [0]}
FULL = {"tasks": ["induction_head", "associative_recall"],
        "models": ["s4d", "h3", "attention", "mamba", "hybrid", "h3-shift-only", "h3-diag-only", "h3-no-gate"],
        "seeds": [0, 1, 2]}


def add_parser(sub) -> None:
    p = sub.add_parser("synthetics", help="H3's synthetic recall tasks (induction head, associative recall, MQAR)",
                       description="Train 2-layer width-32 models on the H3 paper's synthetic tasks (5,000 "
                                   "train / 500 test examples) and report test accuracy on the scored "
                                   "tokens. Writes results/synthetics.json (merged) and results/synthetics.md.")
    p.add_argument("--task", nargs="+", choices=["induction_head", "associative_recall", "mqar"])
    p.add_argument("--model", nargs="+", help="s4d h3 attention mamba hybrid h3-shift-only h3-diag-only h3-no-gate")
    p.add_argument("--seeds", type=int, nargs="+")
    p.add_argument("--quick", action="store_true", help="H3, S4D, attention; both tasks; seed 0")
    p.add_argument("--max-epochs", type=int, default=400)
    p.add_argument("--d-model", type=int, nargs="+", default=[32], help="widths (MQAR sweeps 64 128 256)")
    p.add_argument("--seq-len", type=int, default=None, help="MQAR sequence length (64, 128, 256)")
    p.add_argument("--pairs", type=int, default=8, help="MQAR key-value pairs")
    p.add_argument("--out", default="results/synthetics.json")
    p.set_defaults(func=run)


def run(args) -> int:
    from longssm.data.synthetic import make_task
    from longssm.evaluation.synthetics import SyntheticConfig, merge_records, report, run_cell

    grid = dict(QUICK if args.quick else FULL)
    grid = {"tasks": args.task or grid["tasks"], "models": args.model or grid["models"],
            "seeds": args.seeds if args.seeds is not None else grid["seeds"]}
    out = Path(args.out)
    records = json.loads(out.read_text()) if out.exists() else []
    cells = [(t, m, s, d) for t in grid["tasks"] for s in grid["seeds"] for m in grid["models"] for d in args.d_model]
    for task_name, model, seed, d in tqdm(cells, desc="cells", unit="cell"):
        kw = {"seq_len": args.seq_len, "n_pairs": args.pairs} if task_name == "mqar" else {}
        task = make_task(task_name, seed, **kw)
        bar = tqdm(total=args.max_epochs, desc=f"{task_name}/{model}/seed{seed}", leave=False, unit="epoch")

        def on_epoch(epoch, loss, acc):
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.3f}", test_acc=f"{acc:.1f}")

        rec = run_cell(task, model, seed, SyntheticConfig(d_model=d, max_epochs=args.max_epochs), on_epoch)
        bar.close()
        if task_name == "mqar":
            rec["pairs"] = args.pairs
        tqdm.write(f"{task_name:>18} {model:<14} seed {seed}: test accuracy {rec['test_accuracy']:.1f}% "
                   f"after {rec['epochs']} epochs ({rec['seconds']:.0f} s)")
        records = merge_records(records, [rec])
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(records, indent=1) + "\n")  # after every cell: nothing lost on interrupt
        out.with_suffix(".md").write_text(report(records))
    return 0
