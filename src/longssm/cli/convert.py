"""``longssm import`` / ``longssm export``: models in and out of other libraries' formats."""

from __future__ import annotations

import argparse


def add_parser(sub) -> None:
    p = sub.add_parser("import", help="convert another library's model into a longssm checkpoint")
    isub = p.add_subparsers(dest="format", metavar="FORMAT", required=True)
    q = isub.add_parser("hf-mamba", help="a transformers MambaForCausalLM folder (config.json + safetensors)",
                        description="Convert a transformers MambaForCausalLM folder (e.g. a local copy of "
                                    "state-spaces/mamba-130m-hf) into a longssm checkpoint that eval, generate, "
                                    "info and export read. Its tokenizer.json comes along when present.")
    q.add_argument("folder", help="the transformers model folder")
    q.add_argument("out", help="new checkpoint folder")
    q.add_argument("--tokenizer", help="tokenizer.json to use when the folder has none (default: bytes, "
                                       "for vocabularies of 256 or more)")
    q.set_defaults(func=cmd_import)

    p = sub.add_parser("export", help="write a longssm checkpoint in another library's format")
    esub = p.add_subparsers(dest="format", metavar="FORMAT", required=True)
    q = esub.add_parser("hf-mamba", help="as a transformers MambaForCausalLM folder (pure Mamba models)",
                        description="Write a checkpoint of a pure Mamba model (mamba mixers, RMSNorm, no MLP) "
                                    "as a transformers MambaForCausalLM folder: config.json, model.safetensors "
                                    "and, for a BPE tokenizer, tokenizer.json.")
    _export_args(q, cmd_export)
    q = esub.add_parser("hf", help="as a transformers model folder (any longssm model; trust_remote_code)",
                        description="Write a checkpoint as a transformers folder: LongssmForCausalLM weights "
                                    "(safetensors), config.json with auto_map, the model code, and the tokenizer "
                                    "as a PreTrainedTokenizerFast. Load it with AutoModelForCausalLM."
                                    "from_pretrained(OUT, trust_remote_code=True) (longssm must be installed), "
                                    "or after longssm.integrations.hf.register() without trust_remote_code.")
    _export_args(q, cmd_export_hf)


def _export_args(q, func) -> None:
    q.add_argument("checkpoint", help="checkpoint folder or run folder")
    q.add_argument("out", help="new (or empty) output folder")
    q.set_defaults(func=func)


def cmd_import(args: argparse.Namespace) -> int:
    from longssm.data import BPETokenizer
    from longssm.integrations.hf_mamba import import_hf_mamba

    tok = BPETokenizer.from_file(args.tokenizer) if args.tokenizer else None
    out = import_hf_mamba(args.folder, args.out, tokenizer=tok)
    print(f"wrote {out}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from longssm.integrations.hf_mamba import export_hf_mamba
    from longssm.models.checkpoint import load_model

    model, tok, _, _ = load_model(args.checkpoint)
    out = export_hf_mamba(model, args.out, tok)
    print(f"wrote {out}")
    return 0


def cmd_export_hf(args: argparse.Namespace) -> int:
    from longssm.integrations.hf import export_hf

    print(f"wrote {export_hf(args.checkpoint, args.out)}")
    return 0
