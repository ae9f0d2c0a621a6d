"""``longssm``: the command-line entry point."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import longssm


def _bench(args: argparse.Namespace) -> int:
    from longssm.evaluation.bench_kernels import BenchConfig, run

    cfg = BenchConfig.quick() if args.quick else BenchConfig()
    overrides = {k: v for k, v in (("warmup", args.warmup), ("repeats", args.repeats)) if v is not None}
    cfg = BenchConfig(**{**cfg.__dict__, **overrides})
    if cfg.warmup < 1 or cfg.repeats < 1:
        raise SystemExit("--warmup and --repeats must be >= 1")
    run(cfg, Path(args.out), progress=lambda line: print(line, flush=True))
    print(f"wrote {args.out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="longssm",
        description="Long-context state-space language models: H3, S4D, selective SSMs, "
                    "LongSSM carried states and SMR.",
    )
    parser.add_argument("--version", action="version", version=f"longssm {longssm.__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    bench = commands.add_parser(
        "bench", help="benchmark kernels against their alternatives",
        description="Time our kernels and layers against the real alternatives side by side in "
                    "one process (warm-ups, then medians), print a table and write JSON.",
    )
    bench.add_argument("suite", choices=["kernels"], help="which benchmark suite to run")
    bench.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run of seconds")
    bench.add_argument("--warmup", type=int, default=None, help="warm-up runs per case (default 3)")
    bench.add_argument("--repeats", type=int, default=None, help="timed runs per case, median reported (default 5)")
    bench.add_argument("--out", default="results/bench_kernels.json", help="JSON output path")
    bench.set_defaults(func=_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    # Large CPU tensors on transparent huge pages (PyTorch's own switch, read when torch first
    # allocates): fresh multi-MB buffers then cost far fewer page faults. Set before torch is
    # imported by a command; export THP_MEM_ALLOC_ENABLE=0 to opt out.
    os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
