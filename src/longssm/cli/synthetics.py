"""``longssm synthetics``: one cell or the whole grid of the H3 paper's synthetic table."""

from __future__ import annotations

import json
from pathlib import Path

from tqdm import tqdm

#: --quick: the paper's three rows, one seed, a 150-epoch schedule (warm-up and cosine scaled with it)
#: so the 6 cells fit in about 15 minutes on 2 cores; the full grid keeps the reference's 400 epochs.
QUICK = {"tasks": ["induction_head", "associative_recall"], "models": ["h3", "s4d", "attention"], "seeds": [0],
         "max_epochs": 150}
FULL = {"tasks": ["induction_head", "associative_recall"],
        "models": ["s4d", "h3", "attention", "mamba", "hybrid", "h3-shift-only", "h3-diag-only", "h3-no-gate"],
        "seeds": [0, 1, 2], "max_epochs": 400}
#: MQAR (``--task mqar``): Zoology's sweep scaled to a CPU: sequence lengths 64/128/256 with L/16
#: key-value pairs (4/8/16), widths 32/64/128, a 512-token vocabulary (Zoology: 8,192; the output
#: layer over it dominated the step here) and a 32-epoch schedule over the 5,000 examples.
MQAR = {"models": ["attention", "h3", "mamba"], "seq_lens": [64, 128, 256], "d_model": [32, 64, 128],
        "vocab": 512, "max_epochs": 32,
        "seeds": [0]}


def add_parser(sub) -> None:
    p = sub.add_parser("synthetics", help="H3's synthetic recall tasks (induction head, associative recall, MQAR)",
                       description="Train 2-layer width-32 models on the H3 paper's synthetic tasks (5,000 "
                                   "train / 500 test examples) and report test accuracy on the scored "
                                   "tokens. Writes results/synthetics.json (merged) and results/synthetics.md.")
    p.add_argument("--task", nargs="+", choices=["induction_head", "associative_recall", "mqar"])
    p.add_argument("--model", nargs="+", help="s4d h3 attention mamba hybrid h3-shift-only h3-diag-only h3-no-gate")
    p.add_argument("--seeds", type=int, nargs="+")
    p.add_argument("--quick", action="store_true",
                   help="H3, S4D, attention; both tasks; seed 0; 150 epochs (about 15 minutes with --jobs 2)")
    p.add_argument("--max-epochs", type=int, default=None,
                   help="epoch cap and schedule length (default 400; --quick 150; mqar 32)")
    p.add_argument("--plateau", type=int, default=100,
                   help="stop a cell still below 90%% after this many epochs past warm-up without a 2-point gain in "
                        "test accuracy (0: run to --max-epochs, as the reference does)")
    p.add_argument("--d-model", type=int, nargs="+", default=None, help="widths (default 32; mqar sweeps 32 64 128)")
    p.add_argument("--seq-len", type=int, nargs="+", default=None, help="MQAR sequence lengths (default 64 128 256)")
    p.add_argument("--pairs", type=int, nargs="+", default=None,
                   help="MQAR key-value pairs, one per --seq-len (default seq_len / 16)")
    p.add_argument("--vocab", type=int, default=MQAR["vocab"], help="MQAR vocabulary size (Zoology: 8192)")
    p.add_argument("--jobs", type=int, default=1,
                   help="cells trained in parallel processes (one torch thread each); tiny models "
                        "are dispatch-bound, so 2 jobs on 2 cores roughly double throughput")
    p.add_argument("--out", default=None,
                   help="records (merged) and table; default results/synthetics.json (--quick: synthetics_quick.json)")
    p.set_defaults(func=run)


def _cell(args_tuple):
    """One grid cell in a worker process (a single torch thread)."""
    import torch

    from longssm.data.synthetic import make_task
    from longssm.evaluation.synthetics import SyntheticConfig, run_cell

    task_name, model, seed, d, max_epochs, plateau, task_kw, commit, threads, on_epoch = args_tuple
    if threads:
        torch.set_num_threads(threads)
    rec = run_cell(make_task(task_name, seed, **task_kw), model, seed,
                   SyntheticConfig(d_model=d, max_epochs=max_epochs, plateau=plateau), on_epoch, commit)
    if task_name == "mqar":
        rec.update(pairs=task_kw["n_pairs"], vocab=task_kw["vocab_size"])
    return rec


def _jobs(args, grid: dict, commit: str) -> list[tuple]:
    """(task, model, seed, d_model, max_epochs, plateau, task options, commit) per cell: the H3 tasks
    at each width; MQAR at each (sequence length, pairs) and width, with its own defaults."""
    seq_lens = args.seq_len or MQAR["seq_lens"]
    pairs = args.pairs or [L // 16 for L in seq_lens]
    if len(pairs) != len(seq_lens):
        raise SystemExit(f"error: --pairs needs one value per --seq-len ({len(seq_lens)}), got {len(pairs)}")
    jobs = []
    for t in grid["tasks"]:
        mqar = t == "mqar"
        seeds = args.seeds if args.seeds is not None else (MQAR["seeds"] if mqar else grid["seeds"])
        models = args.model or (MQAR["models"] if mqar else grid["models"])
        epochs = args.max_epochs or (MQAR["max_epochs"] if mqar else grid["max_epochs"])
        widths = args.d_model or (MQAR["d_model"] if mqar else [32])
        shapes = [{"seq_len": L, "n_pairs": P, "vocab_size": args.vocab} for L, P in zip(seq_lens, pairs)] if mqar else [{}]
        jobs += [(t, m, s, d, epochs, args.plateau, kw, commit)
                 for s in seeds for kw in shapes for m in models for d in widths]
    return jobs


def run(args) -> int:
    from longssm.evaluation.synthetics import current_commit, merge_records, plot_mqar, report

    grid = dict(QUICK if args.quick else FULL)
    grid = {**grid, "tasks": args.task or grid["tasks"]}
    out = Path(args.out or ("results/synthetics_quick.json" if args.quick else "results/synthetics.json"))
    commit = current_commit()  # of the code the cells run, whatever HEAD does meanwhile
    records = json.loads(out.read_text()) if out.exists() else []
    jobs = _jobs(args, grid, commit)

    def done(rec):
        nonlocal records
        tqdm.write(f"{rec['task']:>18} {rec['model']:<14} seed {rec['seed']}: test accuracy "
                   f"{rec['test_accuracy']:.1f}% after {rec['epochs']} epochs ({rec['seconds']:.0f} s)")
        records = merge_records(records, [rec])
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(records, indent=1) + "\n")  # after every cell: nothing lost on interrupt
        out.with_suffix(".md").write_text(report(records))
        if any(r["task"] == "mqar" for r in records):
            plot_mqar(records, out.with_name(out.stem + "_mqar.png"))

    if args.jobs > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = [pool.submit(_cell, (*job, 1, None)) for job in jobs]
            for fut in tqdm(as_completed(futures), total=len(futures), desc="cells", unit="cell"):
                done(fut.result())
        return 0
    for job in tqdm(jobs, desc="cells", unit="cell"):
        bar = tqdm(total=job[4], desc=f"{job[0]}/{job[1]}/seed{job[2]}", leave=False, unit="epoch")

        def on_epoch(epoch, loss, acc):
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.3f}", test_acc=f"{acc:.1f}")

        done(_cell((*job, None, on_epoch)))
        bar.close()
    return 0
