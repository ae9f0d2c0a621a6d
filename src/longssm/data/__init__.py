"""Tokenizers, corpora -> token shards, loaders (random windows, consecutive streams)."""

from longssm.data.corpus import Document, embedded_documents, read_documents
from longssm.data.loaders import Batch, ConsecutiveStreams, RandomWindows
from longssm.data.shards import Shard, write_shard
from longssm.data.tokenizers import BPETokenizer, ByteTokenizer, tokenizer_from_json, tokenizer_hash

__all__ = ["Document", "embedded_documents", "read_documents", "Batch", "ConsecutiveStreams",
           "RandomWindows", "Shard", "write_shard", "BPETokenizer", "ByteTokenizer",
           "tokenizer_from_json", "tokenizer_hash"]
