"""``longssm``: the command-line entry point."""

from __future__ import annotations

import argparse
import sys

import longssm


def _commands():
    from longssm.cli import commands

    return commands


def _config_help() -> str:
    from longssm.configs import describe
    from longssm.layers import MIXER_OPTIONS
    from longssm.models import ModelConfig
    from longssm.training.config import DataConfig, TrainConfig

    return ("configuration keys (TOML run file tables, or --set section.key=value):\n"
            "  model.preset = 'tiny-hybrid'\n      a preset from `longssm presets`; other model keys override it\n"
            + describe(ModelConfig, "model", skip=("vocab_size",)) + "\n"
            + "\n".join(describe(cls, f"model.mixer_options.{name}") for name, cls in MIXER_OPTIONS.items()) + "\n"
            + describe(DataConfig, "data") + "\n" + describe(TrainConfig, "train"))


def _add_reading_options(p) -> None:
    """How text files are read (the [data] table's encoding keys, for commands without a run file)."""
    p.add_argument("--encoding", default="utf-8",
                   help="text encoding of the source files (a Python codec name, e.g. latin-1; default utf-8); "
                        "the byte tokenizer takes the raw bytes whatever this says")
    p.add_argument("--encoding-errors", choices=["strict", "replace"], default="strict",
                   help="strict: an undecodable byte is an error naming the file and offset; replace: U+FFFD, counted")
    p.add_argument("--allow-binary", action="store_true",
                   help="accept files that look binary (over 5%% control characters other than whitespace)")


def _add_backend_option(p) -> None:
    p.add_argument("--backend", choices=["auto", "ref", "compile", "native"], default=None,
                   help="kernel backend (default: the checkpoint's model.backend, 'auto' unless set; "
                        "$LONGSSM_BACKEND overrides 'auto'): 'native' runs the package's C++ kernels, "
                        "which decode about 2x faster on CPU (built with g++ on first use, ~2 s)")


def _add_run_options(p):
    p.add_argument("--config", help="TOML run file with [model], [data] and [train] tables")
    p.add_argument("--preset", help="model preset (see `longssm presets`); overrides [model].preset")
    p.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE",
                   help="override one config value, e.g. --set train.lr=3e-4 (repeatable; values in TOML syntax)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="longssm",
        description="Long-context state-space language models: H3, S4D, selective SSMs, "
                    "LongSSM carried states and SMR.",
    )
    parser.add_argument("--version", action="version", version=f"longssm {longssm.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("train", help="train a language model", epilog=_config_help(),
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Train a language model from a run file and/or presets and overrides. "
                                   "Under torchrun, each process trains on its own rows (DDP).")
    _add_run_options(p)
    p.add_argument("--resume", nargs="?", const=True, default=False, metavar="RUN_DIR",
                   help="continue exactly from the newest checkpoint: of RUN_DIR, whose recorded config is used "
                        "(--set may change only steps and logging/evaluation/checkpoint cadence), or of "
                        "train.out_dir without RUN_DIR")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the run already in train.out_dir (its checkpoints and metrics; prepared data kept)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=lambda a: _commands().cmd_train(a))

    p = sub.add_parser("eval", help="validation loss of a checkpoint at given lengths",
                       description="Mean loss (nats/token) and perplexity in two modes: 'zero' (independent "
                                   "windows from the zero state) and 'streaming' (state carried across windows).")
    p.add_argument("checkpoint", help="checkpoint folder or run folder")
    p.add_argument("--data", nargs="*", help="text sources (default: the run's validation split)")
    p.add_argument("--lengths", type=int, nargs="+", default=[256], help="evaluation window lengths")
    p.add_argument("--modes", nargs="+", default=["zero", "streaming"], choices=["zero", "streaming"],
                   help="which of the two modes to run (default: both)")
    p.add_argument("--batch", type=int, default=8, help="parallel streams / windows per batch")
    p.add_argument("--max-tokens", type=int, default=None, help="evaluate at most this many tokens")
    p.add_argument("--context", type=int, default=None,
                   help="streaming: earlier tokens attention layers keep in their KV cache (default: the window "
                        "length); SSM layers always carry all earlier context in their state")
    p.add_argument("--out", help="write the results as JSON here")
    _add_backend_option(p)
    _add_reading_options(p)
    p.set_defaults(func=lambda a: _commands().cmd_eval(a))

    p = sub.add_parser("generate", help="sample text from a checkpoint (streamed)",
                       description="The prompt runs through the parallel forward, then one recurrent step per token.")
    p.add_argument("checkpoint", help="checkpoint folder or run folder")
    p.add_argument("--prompt", required=True, help="text to continue (encoded with the checkpoint's tokenizer)")
    p.add_argument("--max-new-tokens", type=int, default=200, help="tokens to generate (default %(default)s)")
    p.add_argument("--temperature", type=float, default=0.8, help="0 for greedy (default %(default)s)")
    p.add_argument("--top-k", type=int, default=None, help="sample among the k most likely tokens only (default: all)")
    p.add_argument("--top-p", type=float, default=None,
                   help="sample among the most likely tokens whose probabilities sum to p (default: all)")
    p.add_argument("--stop", nargs="*", help="stop once the generated text contains one of these strings")
    p.add_argument("--seed", type=int, default=0, help="sampling seed: the same seed gives the same text (default %(default)s)")
    _add_backend_option(p)
    p.set_defaults(func=lambda a: _commands().cmd_generate(a))

    p = sub.add_parser("data", help="data utilities")
    dsub = p.add_subparsers(dest="data_command", metavar="SUBCOMMAND", required=True)
    q = dsub.add_parser("prepare", help="tokenise a corpus into a memory-mapped shard",
                        description="Tokenise files, folders, globs, hf:NAME or 'embedded' into OUT "
                                    "(tokens.bin, doc_starts.npy, manifest.json, tokenizer.json for BPE).")
    q.add_argument("source", nargs="+", help="files, folders, globs, hf:NAME or 'embedded'")
    q.add_argument("--out", required=True, help="shard folder to write (refused if it holds a shard, unless --overwrite)")
    q.add_argument("--tokenizer", default="byte", help="byte, bpe, or a tokenizer.json path")
    q.add_argument("--bpe-vocab-size", type=int, default=8192, help="vocabulary of a BPE trained here (default %(default)s)")
    q.add_argument("--overwrite", action="store_true", help="replace the shard already in --out")
    _add_reading_options(q)
    q.set_defaults(func=lambda a: _commands().cmd_data_prepare(a))

    p = sub.add_parser("presets", help="list model presets with parameter counts")
    p.set_defaults(func=lambda a: _commands().cmd_presets(a))

    p = sub.add_parser("info", help="describe a checkpoint")
    p.add_argument("checkpoint", help="checkpoint folder or run folder")
    p.set_defaults(func=lambda a: _commands().cmd_info(a))

    p = sub.add_parser("demo", help="train tiny-hybrid on the embedded corpus, evaluate, sample",
                       description="The README's main job: about 5 minutes on 2 CPU cores.")
    p.add_argument("--out-dir", default="runs/demo", help="run folder (default %(default)s)")
    p.add_argument("--minutes", type=float, default=4.0, help="training time budget")
    p.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE", help="override a run config value")
    p.set_defaults(func=lambda a: __import__("longssm.cli.demo", fromlist=["demo"]).demo(a.out_dir, a.minutes, a.set or []))

    from longssm.cli.synthetics import add_parser as add_synthetics

    add_synthetics(sub)
    from longssm.cli.experiment import add_parser as add_experiment

    add_experiment(sub)

    from longssm.cli.bench import add_parser as add_bench

    add_bench(sub)
    from longssm.cli.convert import add_parser as add_convert

    add_convert(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from longssm.models.checkpoint import CheckpointError

    try:
        return args.func(args)
    except (ValueError, TypeError, OSError, CheckpointError, ImportError) as e:
        print(f"longssm: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("longssm: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
