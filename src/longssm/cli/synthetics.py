"""``longssm synthetics``: one cell or the whole grid of the H3 paper's synthetic table."""

from __future__ import annotations

import argparse
import dataclasses
import os
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
#: layer over it dominated the step here), one seed, and the H3 tasks' 5,000 training examples over
#: 64 epochs (10K steps; Zoology: 100,000 examples over 64 epochs). Zoology's 100,000 examples over 3
#: epochs (the same steps) left attention at width 128 on the 25% plateau (copy some value in context)
#: where the 5,000 repeated examples took it to 99.8%: at this step budget repetition trains faster.
MQAR = {"models": ["attention", "h3", "mamba"], "seq_lens": [64, 128, 256], "d_model": [32, 64, 128],
        "vocab": 512, "max_epochs": 64, "seeds": [0]}


def add_parser(sub) -> None:
    p = sub.add_parser("synthetics", help="H3's synthetic recall tasks (induction head, associative recall, MQAR)",
                       description="Train 2-layer width-32 models on the H3 paper's synthetic tasks (5,000 "
                                   "train / 500 test examples) and report test accuracy on the scored "
                                   "tokens. Writes results/synthetics.json (merged) and results/synthetics.md.")
    p.add_argument("--task", nargs="+", choices=["induction_head", "associative_recall", "mqar"],
                   help="default induction_head associative_recall (mqar runs only when named)")
    p.add_argument("--model", nargs="+", help="s4d h3 attention mamba hybrid h3-shift-only h3-diag-only h3-no-gate")
    p.add_argument("--seeds", type=int, nargs="+", help="default 0 1 2 (--quick and mqar: 0)")
    p.add_argument("--quick", action="store_true",
                   help="H3, S4D, attention; both tasks; seed 0; 150 epochs (about 15 minutes with --jobs 2)")
    p.add_argument("--max-epochs", type=int, default=None,
                   help="epoch cap and schedule length (default 400; --quick 150; mqar 64)")
    p.add_argument("--plateau", type=int, default=None,
                   help="save time: stop a cell still below 90%% after this many epochs past warm-up without a "
                        "2-point gain in test accuracy (default 0: run to --max-epochs, as the reference does; "
                        "100 cut attention on induction head at chance in one seed that others solve late)")
    p.add_argument("--d-model", type=int, nargs="+", default=None, help="widths (default 32; mqar sweeps 32 64 128)")
    p.add_argument("--seq-len", type=int, nargs="+", default=None, help="MQAR sequence lengths (default 64 128 256)")
    p.add_argument("--pairs", type=int, nargs="+", default=None,
                   help="MQAR key-value pairs, one per --seq-len (default seq_len / 16)")
    p.add_argument("--vocab", type=int, default=MQAR["vocab"], help="MQAR vocabulary size (Zoology: 8192)")
    p.add_argument("--train-examples", type=int, default=None,
                   help="training examples per task (default 5,000, the H3 paper's; "
                        "Zoology trains MQAR on 100,000); 500 test examples")
    p.add_argument("--jobs", type=int, default=1,
                   help="cells trained in parallel processes; every cell runs on one torch thread (tiny "
                        "models are dispatch-bound), so use one job per core")
    p.add_argument("--out", default=None,
                   help="records (merged) and table; default results/synthetics.json (--quick: synthetics_quick.json)")
    p.add_argument("--config", help="TOML file whose [synthetics] table sets training keys (see below)")
    p.add_argument("--set", action="append", metavar="synthetics.KEY=VALUE",
                   help="override one training key, e.g. --set synthetics.lr=1e-3 (repeatable; TOML values)")
    p.epilog = _config_help()
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.set_defaults(func=run)


def _config_help() -> str:
    from longssm.configs import describe
    from longssm.experiments.synthetics import SyntheticConfig

    return ("training keys ([synthetics] table of --config, or --set synthetics.KEY=VALUE; the flags above "
            "take precedence):\n" + describe(SyntheticConfig, "synthetics"))


def _cell(args_tuple):
    """One grid cell, in this process or a worker, on one torch thread: the models are tiny and
    dispatch-bound, so a second intra-op thread only spins (with other cells on the 2 cores here,
    a cell on 2 threads ran several times slower than on one). ``progress`` is the per-epoch callback, or
    (queue, index) in a worker: epochs are sent to the parent's bars."""
    import torch

    from longssm.data.synthetic import make_task
    from longssm.experiments.synthetics import run_cell

    task_name, model, seed, d, max_epochs, plateau, task_kw, commit, base, progress = args_tuple
    on_epoch = progress
    if isinstance(progress, tuple):
        queue, index = progress
        on_epoch = lambda epoch, loss, acc: queue.put((index, epoch, loss, acc))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cfg = dataclasses.replace(base, d_model=d, max_epochs=max_epochs, plateau=plateau)
        rec = run_cell(make_task(task_name, seed, **task_kw), model, seed, cfg, on_epoch, commit)
    finally:
        torch.set_num_threads(threads)  # the caller's setting, when the cell ran in its process
    if task_name == "mqar":
        rec.update(pairs=task_kw["n_pairs"], vocab=task_kw["vocab_size"])
    return rec


class _EpochBars:
    """One progress bar per running cell (epochs, last loss, test accuracy)."""

    def __init__(self, jobs):
        self.jobs, self.bars, self.closed = jobs, {}, set()

    def update(self, i, epoch, loss, acc):
        if i in self.closed:  # a late message from a finished cell
            return
        if i not in self.bars:
            t, m, seed, d = self.jobs[i][:4]
            self.bars[i] = tqdm(total=self.jobs[i][4], desc=f"{t}/{m}/d{d}/seed{seed}", leave=False, unit="epoch")
        bar = self.bars[i]
        bar.n = epoch
        bar.set_postfix(loss=f"{loss:.3f}", test_acc=f"{acc:.1f}")  # refreshes

    def close(self, i):
        self.closed.add(i)
        if i in self.bars:
            self.bars.pop(i).close()


def _jobs(args, grid: dict, commit: str, base, configured: set) -> list[tuple]:
    """(task, model, seed, d_model, max_epochs, plateau, task options, commit, base config) per
    cell: the H3 tasks at each width; MQAR at each (sequence length, pairs) and width, with its own
    defaults. Width, epochs and plateau: the flag, else a key set by --config / --set
    (``configured``), else the grid's default."""
    from longssm.models.presets import SYNTHETIC_MODELS

    unknown = [m for m in args.model or [] if m not in SYNTHETIC_MODELS]
    if unknown:
        raise ValueError(f"unknown --model {', '.join(unknown)}; expected some of {', '.join(SYNTHETIC_MODELS)}")
    for flag, values, least in (("--jobs", [args.jobs], 1), ("--max-epochs", [args.max_epochs], 1),
                                ("--plateau", [args.plateau], 0), ("--train-examples", [args.train_examples], 1),
                                ("--vocab", [args.vocab], 1), ("--d-model", args.d_model, 1),
                                ("--seq-len", args.seq_len, 1), ("--pairs", args.pairs, 1)):
        values = [v for v in values or [] if v is not None]  # None: not given
        if any(v < least for v in values):
            raise ValueError(f"{flag} must be >= {least}, got {' '.join(map(str, values))}")
    seq_lens = args.seq_len or MQAR["seq_lens"]
    pairs = args.pairs or [L // 16 for L in seq_lens]
    if len(pairs) != len(seq_lens):
        raise ValueError(f"--pairs needs one value per --seq-len ({len(seq_lens)}), got {len(pairs)}")
    jobs = []
    for t in grid["tasks"]:
        mqar = t == "mqar"
        seeds = args.seeds if args.seeds is not None else (MQAR["seeds"] if mqar else grid["seeds"])
        models = args.model or (MQAR["models"] if mqar else grid["models"])
        epochs = args.max_epochs or (base.max_epochs if "max_epochs" in configured else
                                     MQAR["max_epochs"] if mqar else grid["max_epochs"])
        widths = args.d_model or ([base.d_model] if "d_model" in configured else MQAR["d_model"] if mqar else [32])
        n_train = {"n_train": args.train_examples} if args.train_examples else {}  # else make_task's default
        shapes = ([{"seq_len": L, "n_pairs": P, "vocab_size": args.vocab, **n_train}
                   for L, P in zip(seq_lens, pairs)] if mqar else [n_train])
        plateau = base.plateau if args.plateau is None else args.plateau
        jobs += [(t, m, s, d, epochs, plateau, kw, commit, base)
                 for s in seeds for kw in shapes for m in models for d in widths]
    return jobs


def base_config(args):
    """SyntheticConfig from the [synthetics] table of --config and --set overrides (validated by
    key and type); the grid flags (--d-model, --max-epochs, --plateau) set their keys per cell."""
    from longssm.configs import apply_overrides, build, load_toml
    from longssm.experiments.synthetics import SyntheticConfig

    raw = apply_overrides(load_toml(args.config) if args.config else {}, args.set or [])
    unknown = sorted(set(raw) - {"synthetics"})
    if unknown:
        raise ValueError(f"unknown section(s) {unknown}; allowed: synthetics")
    return build(SyntheticConfig, raw.get("synthetics", {}), "synthetics"), set(raw.get("synthetics", {}))


def run(args) -> int:
    from longssm.experiments.records import update_records, write_atomic
    from longssm.experiments.synthetics import current_commit, load_records, merge_records, plot_mqar, report

    grid = dict(QUICK if args.quick else FULL)
    grid = {**grid, "tasks": args.task or grid["tasks"]}
    out = Path(args.out or ("results/synthetics_quick.json" if args.quick else "results/synthetics.json"))
    commit = current_commit()  # of the code the cells run, whatever HEAD does meanwhile
    records = load_records(out)  # before any training: a bad file must not cost a run its results
    jobs = _jobs(args, grid, commit, *base_config(args))

    def done(rec):
        nonlocal records
        tqdm.write(f"{rec['task']:>18} {rec['model']:<14} seed {rec['seed']}: test accuracy "
                   f"{rec['test_accuracy']:.1f}% after {rec['epochs']} epochs ({rec['seconds']:.0f} s)")
        records = update_records(out, [rec], merge_records, load_records)  # first: the table is derived
        write_atomic(out.with_suffix(".md"), report(records))

    def plot():
        if any(r["task"] == "mqar" for r in records):  # once per run, from the merged records
            plot_mqar(records, out.with_name(out.stem + "_mqar.png"))

    bars, cells = _EpochBars(jobs), tqdm(total=len(jobs), desc="cells", unit="cell")
    if args.jobs > 1:
        import multiprocessing
        import queue as queue_lib
        from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

        ctx = multiprocessing.get_context("spawn")
        from multiprocessing.managers import SyncManager

        from longssm.experiments.workers import die_with_parent

        manager = SyncManager(ctx=ctx)
        manager.start(die_with_parent, (os.getpid(),))  # the epoch queue's server, which must not outlive us
        with manager, ProcessPoolExecutor(args.jobs, mp_context=ctx, initializer=die_with_parent,
                                          initargs=(os.getpid(),)) as pool:
            epochs = manager.Queue()
            futures = {pool.submit(_cell, (*job, (epochs, i))): i for i, job in enumerate(jobs)}
            pending = set(futures)
            while pending:
                finished, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
                try:
                    while True:
                        bars.update(*epochs.get_nowait())
                except queue_lib.Empty:
                    pass
                for fut in finished:
                    bars.close(futures[fut])
                    done(fut.result())
                    cells.update()
        plot()
        return 0
    for i, job in enumerate(jobs):
        done(_cell((*job, lambda epoch, loss, acc, i=i: bars.update(i, epoch, loss, acc))))
        bars.close(i)
        cells.update()
    plot()
    return 0
