"""Tokenizers: byte-level (the default: no files, vocabulary 256) and BPE through the Hugging Face
``tokenizers`` library (train on a corpus, save/load ``tokenizer.json``).

A tokenizer serialises to a JSON string that travels with shards' manifests and checkpoints, so a
checkpoint always decodes with the tokenizer it was trained with.
"""

from __future__ import annotations

import hashlib
import json
from typing import Iterable, Protocol

import numpy as np


class Tokenizer(Protocol):
    vocab_size: int
    decodes_documents: bool  # whether encode_document reads the decoded text

    def encode(self, text: str) -> list[int]: ...
    def encode_document(self, doc) -> np.ndarray: ...
    def decode(self, ids: Iterable[int]) -> str: ...
    def to_json(self) -> str: ...


class ByteTokenizer:
    """Bytes as tokens: a text is encoded as UTF-8, a document's raw bytes are taken unchanged
    (whatever their encoding); decoding replaces invalid UTF-8 sequences with U+FFFD."""

    vocab_size = 256
    decodes_documents = False  # documents' bytes are tokens: no decoding, nothing replaced

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def encode_document(self, doc) -> np.ndarray:
        """The document's raw bytes (``doc.data``), never decoded."""
        return np.frombuffer(doc.data, dtype=np.uint8)

    def decode(self, ids: Iterable[int]) -> str:
        return bytes(int(i) for i in ids).decode("utf-8", errors="replace")

    def to_json(self) -> str:
        return json.dumps({"type": "byte"})


class BPETokenizer:
    """Byte-level BPE (GPT-2 style pre-tokenisation) backed by ``tokenizers``."""

    decodes_documents = True

    def __init__(self, tokenizer):
        self._tok = tokenizer
        self.vocab_size = tokenizer.get_vocab_size()

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int = 8192) -> "BPETokenizer":
        from tokenizers import Tokenizer as HFTokenizer, decoders, models, pre_tokenizers, trainers

        tok = HFTokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, show_progress=False,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
        tok.train_from_iterator(texts, trainer=trainer)
        return cls(tok)

    @classmethod
    def from_file(cls, path: str) -> "BPETokenizer":
        from tokenizers import Tokenizer as HFTokenizer

        try:
            return cls(HFTokenizer.from_file(str(path)))
        except Exception as e:  # the library raises a bare Exception on malformed files
            raise ValueError(f"{path}: not a valid tokenizer.json ({e})") from None

    def encode(self, text: str) -> list[int]:
        return self._tok.encode(text).ids

    def encode_document(self, doc) -> np.ndarray:
        """The document's text (``doc.text``, decoded with its encoding) as token ids."""
        return np.asarray(self.encode(doc.text), dtype=np.int64)

    def decode(self, ids: Iterable[int]) -> str:
        return self._tok.decode([int(i) for i in ids])

    def save(self, path: str) -> None:
        self._tok.save(str(path))

    def to_json(self) -> str:
        return json.dumps({"type": "bpe", "tokenizer": json.loads(self._tok.to_str())})


def tokenizer_from_json(text: str) -> Tokenizer:
    spec = json.loads(text)
    if spec.get("type") == "byte":
        return ByteTokenizer()
    if spec.get("type") == "bpe":
        from tokenizers import Tokenizer as HFTokenizer

        return BPETokenizer(HFTokenizer.from_str(json.dumps(spec["tokenizer"])))
    raise ValueError(f"unknown tokenizer type {spec.get('type')!r}; expected 'byte' or 'bpe'")


def tokenizer_hash(tok: Tokenizer) -> str:
    return hashlib.sha256(tok.to_json().encode()).hexdigest()[:16]
