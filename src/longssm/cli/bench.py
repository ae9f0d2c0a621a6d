"""``longssm bench SUITE``: benchmarks that time contenders side by side in one process."""

from __future__ import annotations

import argparse
from pathlib import Path

SUITES = {
    "kernels": "our kernels and layers against the real alternatives (FFT conv, S4D kernel, scans, attention)",
    "eval": "streaming against zero-state evaluation of the same tokens",
    "generate": "decode latency vs context and prompt throughput: our 125M presets, transformers' GPT-2 and "
                "Mamba, mambapy",
    "train": "forward+backward tokens/s: our Mamba vs transformers' Mamba and mambapy; our H3, hybrid and "
             "Transformer vs transformers' GPT-2",
    "hf": "decode speed through transformers' generate() against longssm's generate, same model",
    "parallel": "peak memory per process and step time: 1 vs 2 FSDP2 processes, with and without activation "
                "checkpointing (hybrid-h3-355m)",
    "step": "one training step of the synthetic tasks' tiny models: eager, torch.compile'd model, compile "
            "and native kernel backends",
}


def add_parser(sub) -> None:
    p = sub.add_parser("bench", help="benchmarks: ours beside the alternatives, side by side",
                       description="Time contenders side by side in one process (warm-ups, then interleaved "
                                   "medians), print a table and write JSON. Suites:\n" +
                                   "\n".join(f"  {k:<9} {v}" for k, v in SUITES.items()) +
                                   "\nPeers (transformers, mambapy) come with: pip install 'longssm[bench]'; "
                                   "a missing one is reported as skipped.",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("suite", choices=list(SUITES), help="which benchmark suite to run")
    p.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run of seconds")
    p.add_argument("--warmup", type=int, default=None, help="warm-up runs per case (kernels, eval, generate)")
    p.add_argument("--repeats", type=int, default=None, help="timed runs per case, median reported")
    p.add_argument("--contenders", nargs="+", default=None,
                   help="only these contenders (generate, train), cases (kernels: s4d-kernel fftconv "
                        "h3-attention-L scan scan-compile scan-native scan-step-native linear-native "
                        "mamba-step-native h3-step-native state-passing), "
                        "models (step: s4d h3 attention mamba ...) or presets (hf; parallel: one preset)")
    p.add_argument("--lengths", type=int, nargs="+", default=None,
                   help="sequence lengths (train; default 1024 4096, batch = 4096 tokens / L, at least 1) or "
                        "contexts (generate; default 256 1024 4096 16384 32768)")
    p.add_argument("--batches", type=int, nargs="+", default=None, help="batch sizes (generate; default 1 8)")
    p.add_argument("--out", default=None, help="JSON output path (default results/bench_SUITE.json)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing output file (without it an existing file is refused before "
                        "anything runs, so a partial run never replaces committed results)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    for name in ("warmup", "repeats"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise ValueError(f"--{name} must be >= 1, got {getattr(args, name)}")
    if args.lengths is not None and (args.suite not in ("train", "generate") or min(args.lengths) < 2):
        raise ValueError(f"--lengths applies to bench train and generate and must be >= 2, got {args.lengths} "
                         f"for {args.suite}")
    if args.batches is not None and (args.suite != "generate" or min(args.batches) < 1):
        raise ValueError(f"--batches applies to bench generate and must be >= 1, got {args.batches} for {args.suite}")
    out = Path(args.out or f"results/bench_{args.suite}.json")
    if out.exists() and not args.overwrite:
        raise ValueError(f"{out} already exists; pass --overwrite to replace it or --out for another file")
    say = lambda line: print(line, flush=True)
    if args.suite == "kernels":
        from longssm.evaluation.bench_kernels import BenchConfig, run as bench

        cfg = BenchConfig.quick() if args.quick else BenchConfig()
        overrides = {k: v for k, v in (("warmup", args.warmup), ("repeats", args.repeats)) if v is not None}
        bench(BenchConfig(**{**cfg.__dict__, **overrides}), out, progress=say, only=tuple(args.contenders or ()))
    elif args.suite == "eval":
        from longssm.evaluation import bench_eval

        bench_eval.run(out, quick=args.quick, warmup=args.warmup or 1, repeats=args.repeats or 3, progress=say)
    elif args.suite == "generate":
        import dataclasses

        from longssm.evaluation.bench_generate import GenerateBenchConfig, markdown, plot, run as bench

        cfg = GenerateBenchConfig.quick() if args.quick else GenerateBenchConfig()
        changes = {k: v for k, v in (("warmup", args.warmup), ("steps", args.repeats),
                                     ("contenders", args.contenders and tuple(args.contenders)),
                                     ("contexts", args.lengths and tuple(args.lengths)),
                                     ("batches", args.batches and tuple(args.batches))) if v is not None}
        result = bench(dataclasses.replace(cfg, **changes), out, progress=say)
        plot(result, out.with_suffix(".png"))
        print("\n" + markdown(result))
    elif args.suite == "hf":
        from longssm.integrations.hf_bench import PRESETS, run as bench

        bench(out, presets=tuple(args.contenders or (PRESETS[:2] if args.quick else PRESETS)),
              new_tokens=8 if args.quick else 64, repeats=args.repeats or (1 if args.quick else 5), progress=say)
    elif args.suite == "parallel":
        from longssm.experiments.parallel_memory import run as bench

        kw = {"preset": "tiny-hybrid", "vocab": 256, "seq_len": 64, "steps": 1} if args.quick else {}
        bench(out, **({**kw, "preset": args.contenders[0]} if args.contenders else kw),
              **({"steps": args.repeats} if args.repeats else {}), progress=say)
    elif args.suite == "step":
        from longssm.experiments.synthetic_step_bench import run as bench

        bench(out, repeats=args.repeats or (3 if args.quick else 20), progress=say,
              **({"models": tuple(args.contenders)} if args.contenders else {}))
    else:
        import dataclasses

        from longssm.evaluation.bench_train import ATTENTION_GROUP, MAMBA_GROUP, TrainBenchConfig, markdown, run as bench

        cfg = TrainBenchConfig.quick() if args.quick else TrainBenchConfig()
        if args.repeats:
            cfg = dataclasses.replace(cfg, repeats=args.repeats)
        if args.lengths:
            cfg = dataclasses.replace(cfg, lengths=tuple(args.lengths))
        result = bench(cfg, out, contenders=tuple(args.contenders or MAMBA_GROUP + ATTENTION_GROUP), progress=say)
        print("\n" + markdown(result))
    print(f"wrote {out}" + (f" and {out.with_suffix('.png')}" if args.suite == "generate" else ""))
    return 0
