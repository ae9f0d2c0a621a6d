import numpy as np
import pytest
import torch

from longssm.data import (
    BPETokenizer, ByteTokenizer, ConsecutiveStreams, RandomWindows, Shard, embedded_documents,
    read_documents, tokenizer_from_json, write_shard,
)


def test_byte_tokenizer_roundtrip_and_json():
    tok = ByteTokenizer()
    assert tok.decode(tok.encode("héllo ∑")) == "héllo ∑"
    assert isinstance(tokenizer_from_json(tok.to_json()), ByteTokenizer)


def test_bpe_train_save_load(tmp_path):
    texts = ["the cat sat on the mat"] * 50 + ["state space models remember"] * 50
    tok = BPETokenizer.train(texts, vocab_size=300)
    ids = tok.encode("the cat remembers")
    assert tok.decode(ids) == "the cat remembers" and len(ids) < len("the cat remembers")
    tok.save(str(tmp_path / "tokenizer.json"))
    again = BPETokenizer.from_file(str(tmp_path / "tokenizer.json"))
    assert again.encode("the cat remembers") == ids
    assert tokenizer_from_json(tok.to_json()).encode("the cat remembers") == ids
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(ValueError, match="not a valid tokenizer.json"):
        BPETokenizer.from_file(str(tmp_path / "bad.json"))


def test_non_utf8_is_replaced_and_counted_on_request(tmp_path):
    (tmp_path / "a.txt").write_bytes(b"ok \xff\xfe text \xe2\x82" + b" and plain text after it" * 2)
    (tmp_path / "b.txt").write_bytes("real \ufffd kept".encode())
    docs = {d.name.split("/")[-1]: d for d in read_documents([str(tmp_path)], errors="replace")}
    assert docs["a.txt"].replaced == 3 and "text" in docs["a.txt"].text
    assert docs["b.txt"].replaced == 0


def test_empty_corpus_and_missing_source(tmp_path):
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(ValueError, match="corpus is empty"):
        write_shard(read_documents([str(tmp_path / "empty.txt")]), ByteTokenizer(), tmp_path / "out")
    with pytest.raises(FileNotFoundError, match="matches no file"):
        list(read_documents([str(tmp_path / "nope*.txt")]))


def test_shard_roundtrip(tmp_path):
    (tmp_path / "x.txt").write_text("abc")
    (tmp_path / "y.txt").write_text("defg")
    m = write_shard(read_documents([str(tmp_path / "*.txt")]), ByteTokenizer(), tmp_path / "s")
    shard = Shard.load(tmp_path / "s")
    assert m["tokens"] == 7 and list(shard.doc_starts) == [0, 3]
    assert bytes(shard.tokens.tolist()).decode() == "abcdefg"
    assert len(m["sources"]) == 2 and all(len(s["sha256"]) == 64 for s in m["sources"])
    with pytest.raises(FileNotFoundError, match="not a token shard"):
        Shard.load(tmp_path)


def test_embedded_corpus_is_real_text():
    docs = list(embedded_documents())
    assert len(docs) > 100
    assert sum(len(d.text) for d in docs) > 1_000_000
    assert any("Return" in d.text for d in docs)


def test_consecutive_streams_continue_rows_and_reset_at_documents():
    tokens = np.arange(1000) % 251
    starts = np.array([0, 300])
    loader = ConsecutiveStreams(tokens, starts, global_batch=4, seq_len=10)
    b0, b1 = loader.batch_at(0), loader.batch_at(1)
    assert torch.equal(b1.inputs[:, 0], b0.targets[:, -1])  # row b continues row b
    assert b0.reset.all()  # first segment of a pass
    stream_len = (1000 - 1) // 4
    hits = [i for i in range(loader.per_epoch) if loader.batch_at(i).reset[1]]
    assert hits == [0] + [i for i in range(1, loader.per_epoch) if stream_len + i * 10 <= 300 < stream_len + i * 10 + 10]
    assert loader.batch_at(loader.per_epoch).reset.all()  # next pass starts fresh


def test_loaders_split_the_global_batch_across_ranks():
    tokens = np.arange(5000) % 200
    for make in (lambda r, w: RandomWindows(tokens, 8, 12, seed=3, rank=r, world=w),
                 lambda r, w: ConsecutiveStreams(tokens, np.array([0]), 8, 12, rank=r, world=w)):
        whole = make(0, 1).batch_at(5)
        parts = [make(r, 2).batch_at(5) for r in range(2)]
        assert torch.equal(torch.cat([p.inputs for p in parts]), whole.inputs)
    with pytest.raises(ValueError, match="divisible"):
        RandomWindows(tokens, 7, 12, rank=0, world=2)


def test_relative_and_absolute_sources_share_one_prepared_cache(tmp_path, monkeypatch):
    """A run resolved with absolute paths (as resumed runs and grid workers are) finds the shards
    a parent prepared from relative paths, instead of preparing them again in parallel."""
    from longssm.data.prepare import prepare_splits
    from longssm.training.config import DataConfig

    (tmp_path / "a.txt").write_text("some text to prepare " * 40)
    monkeypatch.chdir(tmp_path)
    said = []
    first = prepare_splits(DataConfig(train=("a.txt",)), tmp_path / "cache", log=said.append)
    again = prepare_splits(DataConfig(train=(str(tmp_path / "a.txt"),)), tmp_path / "cache", log=said.append)
    assert first[0].path == again[0].path and sum("prepared" in m for m in said) == 1


def test_a_failing_document_leaves_no_temporary_file(tmp_path):
    (tmp_path / "a.txt").write_bytes(b"fine text\n" * 20)
    (tmp_path / "b.txt").write_bytes(b"caf\xe9 latin-1 text\n" * 20)
    with pytest.raises(ValueError, match="not valid utf-8"):
        write_shard(read_documents([str(tmp_path / "*.txt")]), BPETokenizer.train(["abc"], 260), tmp_path / "s")
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == []
