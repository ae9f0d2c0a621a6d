"""Implementations of the ``longssm`` commands: thin layers over the library."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from longssm.configs import apply_overrides, load_toml


def _requested(args) -> dict:
    raw = load_toml(args.config) if args.config else {}
    if getattr(args, "preset", None):
        raw.setdefault("model", {})["preset"] = args.preset
    return apply_overrides(raw, args.set or [])


def run_config(args):
    """The run to train: from --config / --preset / --set; with ``--resume RUN_DIR``, the run
    recorded there, changed only where a resumed run may change (``resume_config``)."""
    from longssm.models import checkpoint as ckpt
    from longssm.training.config import resolve, resume_config

    if isinstance(args.resume, str):
        folder = ckpt.find_checkpoint(args.resume)
        record = ckpt.read_record(folder)
        if record.get("weights_only"):
            raise ValueError(f"{folder} holds weights only ({_source(record)}): there is no run to resume; "
                             f"eval, generate, info and export read it")
        return resume_config(record["config"], _requested(args), args.resume)
    return resolve(_requested(args))


def cmd_train(args) -> int:
    from longssm.training.loop import train

    cfg = run_config(args)
    metrics = train(cfg, resume=bool(args.resume), overwrite=args.overwrite, progress=not args.no_progress)
    print(json.dumps(metrics))
    return 130 if metrics.get("interrupted") else 0


def _positive(**values) -> None:
    for name, v in values.items():
        if v is not None and v < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {v}")


def _reading(args) -> dict:
    return dict(encoding=args.encoding, errors=args.encoding_errors, allow_binary=args.allow_binary)


def _eval_tokens(paths, tokenizer, tokenizer_hash, reading: dict):
    """Tokens of --data: a prepared shard folder (its manifest's tokenizer must be the model's)
    or text sources, tokenised in a temporary folder that is removed afterwards."""
    import tempfile

    from longssm.data import Shard, read_documents, write_shard

    if len(paths) == 1 and (Path(paths[0]) / "manifest.json").exists():
        shard = Shard.load(paths[0])
        if shard.manifest["tokenizer_hash"] != tokenizer_hash:
            raise ValueError(f"--data {paths[0]} was tokenised with tokenizer {shard.manifest['tokenizer_hash']}, "
                             f"the model with {tokenizer_hash}: prepare it again with the model's tokenizer")
        return shard.tokens
    with tempfile.TemporaryDirectory(prefix="longssm-eval-") as tmp:
        write_shard(read_documents(paths, **reading), tokenizer, tmp)
        return np.array(Shard.load(tmp).tokens)  # a copy: the memory map goes with the folder


def _load(args):
    """The checkpoint's model (and tokenizer, record, ...), on ``--backend`` where one is given."""
    from longssm.layers import configure
    from longssm.models import load_model

    loaded = load_model(args.checkpoint)
    if args.backend is not None:
        configure(loaded[0], backend=args.backend)
    return loaded


def cmd_eval(args) -> int:
    from longssm.data import tokenizer_hash
    from longssm.evaluation.perplexity import evaluate

    _positive(lengths=min(args.lengths), batch=args.batch, max_tokens=args.max_tokens, context=args.context)
    if args.out and Path(args.out).exists():
        raise ValueError(f"--out {args.out} exists; choose another path (results are never written over)")
    model, tokenizer, record, _ = _load(args)
    if args.data:
        tokens = _eval_tokens(args.data, tokenizer, tokenizer_hash(tokenizer), _reading(args))
    else:
        from longssm.data.prepare import prepare_splits
        from longssm.training.config import resolve

        if record.get("weights_only"):
            raise ValueError(f"{args.checkpoint} holds weights only ({_source(record)}) and no run's validation "
                             f"split; give the text to evaluate with --data")
        cfg = resolve(record["config"])
        tokens = prepare_splits(cfg.data, cfg.data.cache_dir or Path(cfg.train.out_dir) / "data")[1].tokens
    from tqdm import tqdm

    results = []
    for mode in args.modes:
        for L in args.lengths:
            n = tokens.size - 1 if args.max_tokens is None else min(tokens.size - 1, args.max_tokens)
            with tqdm(total=n // args.batch // L * L * args.batch, unit="tok", unit_scale=True, leave=False,
                      desc=f"{mode} L={L}", disable=None) as bar:  # disable=None: only on a terminal
                r = evaluate(model, tokens, L, mode, batch=args.batch, max_tokens=args.max_tokens, context=args.context,
                             progress=lambda done: bar.update(done - bar.n))
            results.append(r)
            print(f"{mode:>9} L={L:<6} loss {r['loss']:.4f} nats/token  ppl {r['perplexity']:.3f}  ({r['tokens']:,} tokens)")
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1) + "\n")
    return 0


def cmd_generate(args) -> int:
    from longssm.models import generate

    _positive(max_new_tokens=args.max_new_tokens, top_k=args.top_k)
    model, tokenizer, _, _ = _load(args)
    ids = tokenizer.encode(args.prompt)
    if not ids:
        raise ValueError("--prompt is empty after tokenisation; give at least one character")
    g = torch.Generator().manual_seed(args.seed)
    print(args.prompt, end="", flush=True)
    stops = [s for s in (args.stop or []) if s]
    new_ids: list[int] = []
    shown = 0  # characters of the continuation printed so far

    def stream(tok) -> bool:
        """Print what has decoded to complete characters; True (stop) once the text holds a stop
        string, printed up to and including its first occurrence."""
        nonlocal shown
        new_ids.append(int(tok[0]))
        text = tokenizer.decode(new_ids)
        cut = min((text.find(s) + len(s) for s in stops if s in text), default=None)
        end = cut if cut is not None else len(text.rstrip("\ufffd"))  # hold back an incomplete character
        print(text[shown:end], end="", flush=True)
        shown = max(shown, end)
        return cut is not None

    generate(model, torch.tensor([ids]), args.max_new_tokens, temperature=args.temperature,
             top_k=args.top_k, top_p=args.top_p, generator=g, on_token=stream)
    text = tokenizer.decode(new_ids)
    print("" if any(s in text for s in stops) else text[shown:])
    return 0


def cmd_data_prepare(args) -> int:
    from longssm.data import read_documents, write_shard
    from longssm.data.prepare import make_tokenizer

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file; expected a folder for the shard")
    ours = ("tokens.bin", "doc_starts.npy", "manifest.json", "tokenizer.json")
    present = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
    if present and not args.overwrite:
        raise ValueError(f"--out {out} is not empty ({', '.join(present[:4])}{', ...' if len(present) > 4 else ''}); "
                         f"pass --overwrite to replace a shard there, or choose an empty folder")
    others = [n for n in present if n not in ours]
    if others:
        raise ValueError(f"--out {out} holds files that are not a shard's ({', '.join(others[:4])}); "
                         f"--overwrite only replaces a shard: choose another folder")
    docs = list(read_documents(args.source, **_reading(args)))
    tokenizer = make_tokenizer(args.tokenizer, docs, args.bpe_vocab_size)
    for name in present:  # the previous shard, a stale tokenizer.json included
        (out / name).unlink()
    manifest = write_shard(docs, tokenizer, out)
    if hasattr(tokenizer, "save"):
        tokenizer.save(str(out / "tokenizer.json"))
    print(f"{manifest['tokens']:,} tokens from {manifest['documents']} documents -> {out} "
          f"(tokenizer {manifest['tokenizer_hash']}, {manifest['replaced_bytes']} invalid {args.encoding} sequences replaced)")
    return 0


def cmd_presets(args) -> int:
    from longssm.models import PRESETS, LanguageModel, count_parameters, get_preset

    print(f"{'preset':<18} {'params':>10}  {'d_model':>7} {'layers':>6}  mixers")
    for name in PRESETS:
        cfg = get_preset(name)
        with torch.device("meta"):
            n = count_parameters(LanguageModel(cfg))
        mix = ",".join(sorted(set(cfg.mixers)))
        print(f"{name:<18} {n / 1e6:>9.1f}M  {cfg.d_model:>7} {cfg.n_layer:>6}  {mix} (vocab {cfg.vocab_size})")
    return 0


def cmd_info(args) -> int:
    from longssm.models import count_parameters, load_model

    model, tokenizer, record, folder = load_model(args.checkpoint)
    cfg = model.config
    kind = json.loads(tokenizer.to_json())["type"]
    print(f"checkpoint {folder}\nstep {record['step']}  parameters {count_parameters(model):,}\n"
          f"architecture {cfg.n_layer} layers x d_model {cfg.d_model}, mixers {', '.join(cfg.mixers)}, "
          f"MLP {cfg.mlp_ratio:g}x, {cfg.norm}\ntokenizer {kind} (vocab {tokenizer.vocab_size})\n"
          f"metrics {json.dumps(record.get('metrics', {}))}")
    if record.get("weights_only"):
        print(f"weights only: {_source(record)}")
    else:
        print("config " + json.dumps(record["config"], indent=1))
    return 0


def _source(record: dict) -> str:
    """Where a weights-only checkpoint came from, in words."""
    src = record.get("source") or {}
    return f"converted from {src['format']} at {src['path']}" if src else "no training run recorded"
