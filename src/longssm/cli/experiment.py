"""``longssm experiment length-extension``: LongSSM's zero- vs previous-initialised states."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path


def add_parser(sub) -> None:
    from longssm.configs import describe
    from longssm.experiments.length_extension import MODELS, LengthExtensionConfig

    d = LengthExtensionConfig()
    p = sub.add_parser("experiment", help="paper experiments (length-extension, smr, lm-compare)")
    esub = p.add_subparsers(dest="experiment", metavar="EXPERIMENT", required=True)
    q = esub.add_parser(
        "length-extension", help="LongSSM: train at short T with zero or previous states, evaluate up to 16K",
        description="Train every (model, T, state_init) on the same tokens per step and total tokens, "
                    "evaluate on the validation books at every length in three modes (zero-state windows, "
                    "streaming over consecutive windows, streaming over shuffled windows), and write "
                    "OUT.csv, OUT.png and OUT.md. Finished runs (rows in OUT.csv) are kept; "
                    "interrupted trainings resume from their checkpoints in --runs-dir.")
    q.add_argument("--quick", action="store_true",
                   help="H3 only, T in {16, 256}, 1.5M tokens per run, 6 lengths, 8 streams (~20 min on 2 cores)")
    q.add_argument("--models", nargs="+", choices=sorted(MODELS), help=f"default {' '.join(d.models)}")
    q.add_argument("--train-lens", type=int, nargs="+", help=f"default {' '.join(map(str, d.train_lens))}")
    q.add_argument("--eval-lens", type=int, nargs="+", help="default 16 32 ... 16384 (each divides the longest)")
    q.add_argument("--d-model", type=int, help=f"model width, default {d.d_model}")
    q.add_argument("--n-layer", type=int, help=f"blocks, default {d.n_layer}")
    q.add_argument("--tokens-per-step", type=int, help=f"default {d.tokens_per_step} (batch = this / T)")
    q.add_argument("--total-tokens", type=int, help=f"training tokens per run, default {d.total_tokens:,}")
    q.add_argument("--lr", type=float, help=f"peak learning rate, default {d.lr:g}")
    q.add_argument("--eval-streams", type=int, help=f"validation pieces of the longest length, default {d.eval_streams}")
    q.add_argument("--train", nargs="+", help=f"training books, default {' '.join(d.train)}")
    q.add_argument("--valid", nargs="+", help=f"validation books, default {' '.join(d.valid)}")
    q.add_argument("--runs-dir", help=f"run folders, default {d.runs_dir}")
    q.add_argument("--jobs", type=int, default=1, help="runs trained in parallel processes")
    q.add_argument("--out", default="results/length_extension", help="OUT.csv / OUT.png / OUT.md")
    q.add_argument("--config", help="TOML file whose [length_extension] table sets the keys below")
    q.add_argument("--set", action="append", metavar="length_extension.KEY=VALUE",
                   help="override one key, e.g. --set length_extension.lr=1e-3 (repeatable; TOML values)")
    q.epilog = ("keys ([length_extension] table of --config, or --set; --quick, then the file, then --set, "
                "then the flags above):\n" + describe(LengthExtensionConfig, "length_extension"))
    q.formatter_class = argparse.RawDescriptionHelpFormatter
    q.set_defaults(func=run)
    add_smr(esub)
    add_lm_compare(esub)


def _table(args, section: str, cls, quick: dict, flags: dict):
    """``cls`` from --quick defaults, the [section] table of --config, --set overrides, then flags;
    every key and type checked (unknown keys are errors naming them)."""
    from longssm.configs import apply_overrides, build, load_toml

    raw = apply_overrides(load_toml(args.config) if args.config else {}, args.set or [])
    unknown = sorted(set(raw) - {section})
    if unknown:
        raise ValueError(f"unknown section(s) {unknown}; allowed: {section}")
    fields = {**(quick if args.quick else {}), **raw.get(section, {}),
              **{k: v for k, v in flags.items() if v is not None}}
    return build(cls, fields, section)


def add_smr(esub) -> None:
    from longssm.configs import describe
    from longssm.experiments.smr import SMRExperimentConfig

    q = esub.add_parser(
        "smr", help="State Memory Replay: SSMs with and without SMR when the sampling step changes",
        description="Train every (task, core, SMR off/on, seed) at the training sampling rate, evaluate at other "
                    "rates (time steps scaled by 1/c) and under jittered sampling, and write OUT.json (merged "
                    "records; finished cells are skipped, so an interrupted run resumes), OUT.md and OUT.png.")
    q.add_argument("--quick", action="store_true",
                   help="1 seed, 600 steps, width 32, c in {1/4, 1, 4} (9 min 20 s with --jobs 2 on 2 cores)")
    q.add_argument("--tasks", nargs="+", help="sines digits listops lm (default: all)")
    q.add_argument("--cores", nargs="+", help="s4d s5 h3 mamba (default: all)")
    q.add_argument("--seeds", type=int, nargs="+", help="default 0 1 2 (--quick: 0)")
    q.add_argument("--jobs", type=int, default=1, help="cells trained in parallel processes (one torch thread each)")
    q.add_argument("--out", default=None, help="OUT.json / OUT.md / OUT.png; default results/smr (--quick: results/smr_quick)")
    q.add_argument("--config", help="TOML file whose [smr] table sets the keys below")
    q.add_argument("--set", action="append", metavar="smr.KEY=VALUE", help="override one key (repeatable; TOML values)")
    q.epilog = ("keys ([smr] table of --config, or --set; --quick, then the file, then --set, then the flags above):\n"
                + describe(SMRExperimentConfig, "smr"))
    q.formatter_class = argparse.RawDescriptionHelpFormatter
    q.set_defaults(func=run_smr)


def add_lm_compare(esub) -> None:
    from longssm.configs import describe
    from longssm.experiments.lm_compare import LMCompareConfig

    q = esub.add_parser(
        "lm-compare", help="H3 Table 3 at CPU scale: S4D, H3, Transformer, hybrid, Mamba on Gutenberg (BPE 8K)",
        description="Train every model (about equal non-embedding parameters) on the same tokens of the Gutenberg "
                    "training books: a learning-rate sweep per model, then the final runs at each model's best rate, "
                    "one per seed; score them on the validation books and write OUT.json (merged records; finished "
                    "cells are skipped and interrupted ones resume from their checkpoints), OUT.md and OUT.png.")
    q.add_argument("--quick", action="store_true",
                   help="1 seed, 250 steps (1M tokens), no sweep (lr 1e-3 for every model); about 40 minutes with --jobs 2 on 2 cores")
    q.add_argument("--models", nargs="+", help="s4d h3 transformer hybrid mamba (default: all)")
    q.add_argument("--seeds", type=int, nargs="+", help="default 0 1 2 (--quick: 0)")
    q.add_argument("--jobs", type=int, default=1, help="runs trained in parallel processes (threads split among them)")
    q.add_argument("--out", default=None,
                   help="OUT.json / OUT.md / OUT.png; default results/lm_compare (--quick: results/lm_compare_quick)")
    q.add_argument("--config", help="TOML file whose [lm_compare] table sets the keys below")
    q.add_argument("--set", action="append", metavar="lm_compare.KEY=VALUE", help="override one key (repeatable; TOML values)")
    q.epilog = ("keys ([lm_compare] table of --config, or --set; --quick, then the file, then --set, then the flags "
                "above):\n" + describe(LMCompareConfig, "lm_compare"))
    q.formatter_class = argparse.RawDescriptionHelpFormatter
    q.set_defaults(func=run_lm_compare)


def run_lm_compare(args) -> int:
    from longssm.experiments.lm_compare import QUICK, LMCompareConfig, curve_tokens, run_all
    from longssm.experiments.lm_compare_report import plot, report, report_header

    if args.jobs < 1:
        raise ValueError(f"--jobs must be >= 1, got {args.jobs}")
    flags = {"models": args.models and tuple(args.models), "seeds": args.seeds and tuple(args.seeds)}
    cfg = _table(args, "lm_compare", LMCompareConfig, QUICK, flags)
    for src in (*cfg.train, *cfg.valid):
        if not Path(src).exists():
            raise FileNotFoundError(f"{src} does not exist (the Gutenberg books live in ../shared/data/gutenberg; "
                                    f"set lm_compare.train / lm_compare.valid)")
    out = Path(args.out or ("results/lm_compare_quick" if args.quick else "results/lm_compare"))
    header = report_header(cfg, quick=args.quick)

    def outputs(records):
        out.with_suffix(".md").write_text(report(records, header))
        plot(records, out.with_suffix(".png"), curve_tokens(cfg))

    from tqdm.auto import tqdm

    records = run_all(cfg, out.with_suffix(".json"), jobs=args.jobs, progress=tqdm.write, on_records=outputs)
    if records:
        outputs(records)
    print(f"wrote {out}.json ({len(records)} records), {out}.md, {out}.png")
    return 0


def run_smr(args) -> int:
    from longssm.experiments.smr import QUICK, SMRExperimentConfig
    from longssm.experiments.smr_grid import run_grid
    from longssm.experiments.smr_report import plot, report
    from longssm.experiments.synthetics import current_commit

    flags = {"tasks": args.tasks and tuple(args.tasks), "cores": args.cores and tuple(args.cores),
             "seeds": args.seeds and tuple(args.seeds)}
    cfg = _table(args, "smr", SMRExperimentConfig, QUICK, flags)
    out = Path(args.out or ("results/smr_quick" if args.quick else "results/smr"))
    header = ("# State Memory Replay under sampling-step changes\n\n"
              f"`longssm experiment smr{' --quick' if args.quick else ''}`: every cell trained at c = 1, evaluated at "
              "sampling factor c with time steps scaled by 1/c (digits: resolution r, c = (r/16)^2; token tasks: "
              "each token held c times) and, for sines, under jittered sampling (per-step steps for S5 and the "
              "selective SSM, the mean step for the time-invariant S4D and H3). The protocol is ours "
              "(docs in `longssm.data.sampling`). Settings: `" + json.dumps(dataclasses.asdict(cfg)) + "`.")

    def outputs(records):
        out.with_suffix(".md").write_text(report(records, header))
        plot(records, out.with_suffix(".png"))

    records = run_grid(cfg, out.with_suffix(".json"), jobs=args.jobs, commit=current_commit(), on_records=outputs)
    if records:
        outputs(records)
    print(f"wrote {out}.json ({len(records)} records), {out}.md, {out}.png")
    return 0


def run(args) -> int:
    from longssm.experiments.length_extension import QUICK, LengthExtensionConfig, run_all

    tuples = ("models", "train_lens", "eval_lens", "train", "valid")
    flags = {name: getattr(args, name) and tuple(getattr(args, name)) for name in tuples}
    flags.update({name: getattr(args, name) for name in ("d_model", "n_layer", "tokens_per_step", "total_tokens",
                                                         "lr", "eval_streams", "runs_dir")})
    cfg = _table(args, "length_extension", LengthExtensionConfig, QUICK, flags)
    for src in (*cfg.train, *cfg.valid):
        if not Path(src).exists():
            raise FileNotFoundError(f"{src} does not exist (the Gutenberg books live in ../shared/data/gutenberg; "
                                    f"pass --train/--valid)")
    from tqdm.auto import tqdm

    rows = run_all(cfg, Path(args.out), jobs=args.jobs, progress=tqdm.write)
    print(f"wrote {args.out}.csv ({len(rows)} rows), {args.out}.png, {args.out}.md")
    return 0
