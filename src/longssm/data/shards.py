"""Token shards: a corpus tokenised once into a memory-mapped array plus a manifest.

Layout of a shard directory: ``tokens.bin`` (uint16 when the vocabulary fits, else uint32),
``doc_starts.npy`` (int64 offsets where documents begin), ``manifest.json`` (token and document
counts, dtype, tokenizer JSON and hash, and every source's sha256, encoding and replacement count).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from longssm.data.corpus import Document
from longssm.data.tokenizers import Tokenizer, tokenizer_from_json, tokenizer_hash

MANIFEST = "manifest.json"


def write_shard(docs: Iterable[Document], tokenizer: Tokenizer, out_dir: str | Path,
                progress: Callable[[int, int], None] | None = None) -> dict:
    """Tokenise ``docs`` into ``out_dir``; returns the manifest. Files appear atomically, from
    temporary names of this process's own (two processes preparing the same shard each write
    complete files; the last rename wins)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    own = f"{os.getpid()}.tmp"
    dtype = np.uint16 if tokenizer.vocab_size <= 1 << 16 else np.uint32
    starts, sources, n_tokens = [], [], 0
    tmp = out / f"tokens.bin.{own}"
    try:
        with open(tmp, "wb") as f:
            for doc in docs:
                ids = tokenizer.encode_document(doc).astype(dtype)
                if ids.size == 0:
                    continue
                starts.append(n_tokens)
                f.write(ids.tobytes())
                n_tokens += ids.size
                sources.append({"name": doc.name, "sha256": doc.sha256, "tokens": int(ids.size),
                                "encoding": doc.encoding,
                                "replaced_bytes": doc.replaced if tokenizer.decodes_documents else 0})
                if progress:
                    progress(len(sources), n_tokens)
    except BaseException:  # a bad document, a full disk: no half-written file left behind
        tmp.unlink(missing_ok=True)
        raise
    if n_tokens == 0:
        tmp.unlink()
        raise ValueError("the corpus is empty: no document produced any token")
    os.replace(tmp, out / "tokens.bin")
    np.save(out / f"doc_starts.{own}.npy", np.asarray(starts, dtype=np.int64))
    os.replace(out / f"doc_starts.{own}.npy", out / "doc_starts.npy")
    manifest = {"tokens": n_tokens, "documents": len(sources), "dtype": np.dtype(dtype).name,
                "vocab_size": tokenizer.vocab_size, "tokenizer_hash": tokenizer_hash(tokenizer),
                "tokenizer": tokenizer.to_json(), "sources": sources,
                "replaced_bytes": sum(s["replaced_bytes"] for s in sources)}
    (out / f"manifest.{own}.json").write_text(json.dumps(manifest, indent=1))
    os.replace(out / f"manifest.{own}.json", out / MANIFEST)
    return manifest


@dataclass
class Shard:
    """A loaded shard: ``tokens`` is a read-only memmap, ``doc_starts`` document offsets."""

    path: Path
    tokens: np.ndarray
    doc_starts: np.ndarray
    manifest: dict

    @classmethod
    def load(cls, path: str | Path) -> "Shard":
        path = Path(path)
        try:
            manifest = json.loads((path / MANIFEST).read_text())
        except FileNotFoundError:
            raise FileNotFoundError(f"{path}: not a token shard (no {MANIFEST}); run `longssm data prepare`") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ValueError(f"{path / MANIFEST}: corrupted ({e}); prepare the shard again") from None
        tokens = np.memmap(path / "tokens.bin", dtype=manifest["dtype"], mode="r")
        if tokens.size != manifest["tokens"]:
            raise ValueError(f"{path / 'tokens.bin'}: {tokens.size} tokens, manifest says {manifest['tokens']}")
        return cls(path, tokens, np.load(path / "doc_starts.npy"), manifest)

    @property
    def tokenizer(self) -> Tokenizer:
        return tokenizer_from_json(self.manifest["tokenizer"])
