"""From a [data] config to train/valid token shards and the tokenizer (prepared once, reused)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Callable

from longssm.data.corpus import Document, read_documents
from longssm.data.shards import MANIFEST, Shard, write_shard
from longssm.data.tokenizers import BPETokenizer, ByteTokenizer, Tokenizer

HOLDOUT_EVERY = 10  # without explicit validation sources, every 10th document is held out


def make_tokenizer(spec: str, train_docs: list[Document], bpe_vocab_size: int) -> Tokenizer:
    if spec == "byte":
        return ByteTokenizer()
    if spec == "bpe":
        return BPETokenizer.train((d.text for d in train_docs), bpe_vocab_size)
    if Path(spec).is_file():
        return BPETokenizer.from_file(spec)
    raise ValueError(f"data.tokenizer must be 'byte', 'bpe' or a tokenizer.json path, got {spec!r}")


def _split(docs: list[Document]) -> tuple[list[Document], list[Document]]:
    """Hold out every HOLDOUT_EVERY-th document; a lone document's bytes are split at 90% of its
    characters (undecodable bytes count as one character each, so every byte is kept)."""
    if len(docs) >= 2:
        valid = docs[HOLDOUT_EVERY - 1 :: HOLDOUT_EVERY] or docs[-1:]
        return [d for d in docs if d not in valid], valid
    (doc,) = docs
    if "\n".encode(doc.encoding) != b"\n":
        raise ValueError(f"{doc.name}: a single document in {doc.encoding} cannot be split into training and "
                         f"validation text; give validation sources (data.valid)")
    chars = doc.data.decode(doc.encoding, errors="surrogateescape")
    cut = len(chars[: int(len(chars) * 0.9)].encode(doc.encoding, errors="surrogateescape"))
    part = lambda suffix, data: Document(doc.name + suffix, data, doc.encoding, doc.errors)
    return [part("[:90%]", doc.data[:cut])], [part("[90%:]", doc.data[cut:])]


def _is_shard(source: str) -> bool:
    return (Path(source) / MANIFEST).exists()


def prepare_splits(data_cfg, cache_dir: str | Path,
                   log: Callable[[str], None] = print) -> tuple[Shard, Shard]:
    """Train and valid shards for ``data_cfg`` under ``cache_dir`` (reused when the config matches)."""
    cache = Path(cache_dir)
    if len(data_cfg.train) == 1 and _is_shard(data_cfg.train[0]):
        train = Shard.load(data_cfg.train[0])
        if not data_cfg.valid or not _is_shard(data_cfg.valid[0]):
            raise ValueError("a prepared training shard needs a prepared validation shard in data.valid")
        valid = Shard.load(data_cfg.valid[0])
        if train.manifest["tokenizer_hash"] != valid.manifest["tokenizer_hash"]:
            raise ValueError(f"the shards were tokenised differently: {train.path} with tokenizer "
                             f"{train.manifest['tokenizer_hash']}, {valid.path} with {valid.manifest['tokenizer_hash']}; "
                             f"prepare the validation data with the training shard's tokenizer.json")
        return train, valid
    reading = dict(encoding=data_cfg.encoding, errors=data_cfg.encoding_errors, allow_binary=data_cfg.allow_binary)
    # the key of a default reading is the one used before these options existed (caches stay valid)
    extra = [] if reading == dict(encoding="utf-8", errors="strict", allow_binary=False) else [reading]
    # sources keyed as absolute paths: a run resolved from another folder (or with its recorded,
    # absolute paths) finds the data another process prepared, instead of preparing it again
    where = lambda src: src if src == "embedded" or src.startswith("hf:") else os.path.abspath(src)
    key = hashlib.sha256(json.dumps([[where(s) for s in data_cfg.train], [where(s) for s in data_cfg.valid],
                                     data_cfg.tokenizer, data_cfg.bpe_vocab_size] + extra).encode()).hexdigest()[:12]
    out = cache / key
    if (out / "train" / MANIFEST).exists() and (out / "valid" / MANIFEST).exists():
        return Shard.load(out / "train"), Shard.load(out / "valid")
    docs = list(read_documents(data_cfg.train, **reading))
    if not docs:
        raise ValueError(f"the corpus {list(data_cfg.train)} has no documents")
    if data_cfg.valid:
        train_docs, valid_docs = docs, list(read_documents(data_cfg.valid, **reading))
    else:
        train_docs, valid_docs = _split(docs)
    tokenizer = make_tokenizer(data_cfg.tokenizer, train_docs, data_cfg.bpe_vocab_size)
    train = write_shard(train_docs, tokenizer, out / "train")
    valid = write_shard(valid_docs, tokenizer, out / "valid")
    if train["replaced_bytes"] or valid["replaced_bytes"]:
        log(f"warning: {train['replaced_bytes'] + valid['replaced_bytes']} invalid {data_cfg.encoding} "
            f"sequences were replaced by U+FFFD")
    log(f"prepared {train['tokens']:,} training and {valid['tokens']:,} validation tokens "
        f"({train['documents']} + {valid['documents']} documents) in {out}")
    return Shard.load(out / "train"), Shard.load(out / "valid")
