"""Text in any encoding: raw bytes for the byte tokenizer, decoding errors that name the file and
the byte, binary files refused unless allowed, and random byte files fuzzed through preparation."""

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from longssm.data import BPETokenizer, ByteTokenizer, Shard, read_documents, write_shard
from longssm.data.corpus import BINARY_FRACTION, non_text_fraction
from longssm.data.prepare import prepare_splits
from longssm.training.config import DataConfig

LATIN1 = "Dès Noël où un zéphyr haï me vêt de glaçons würmiens, je dîne d'exquis rôtis.\n" * 20


def test_byte_tokenizer_takes_raw_bytes_unchanged(tmp_path):
    raw = LATIN1.encode("latin-1") + b"\xff\xfe\x80"  # not UTF-8
    (tmp_path / "a.txt").write_bytes(raw)
    m = write_shard(read_documents([str(tmp_path / "a.txt")]), ByteTokenizer(), tmp_path / "s")
    assert bytes(Shard.load(tmp_path / "s").tokens.tolist()) == raw
    assert m["replaced_bytes"] == 0 and m["sources"][0]["encoding"] == "utf-8"


def test_undecodable_text_names_the_file_and_first_bad_byte(tmp_path):
    raw = LATIN1.encode("latin-1")
    (tmp_path / "fr.txt").write_bytes(raw)
    first = next(i for i, b in enumerate(raw) if b >= 0x80)
    docs = read_documents([str(tmp_path / "fr.txt")])
    with pytest.raises(ValueError, match=rf"fr.txt: not valid utf-8 at byte {first} \(0x{raw[first]:02x}\).*--encoding"):
        write_shard(docs, BPETokenizer.train(["abc"], 260), tmp_path / "s")


def test_encoding_decodes_for_text_tokenizers(tmp_path):
    (tmp_path / "fr.txt").write_bytes(LATIN1.encode("latin-1"))
    (tmp_path / "u16.txt").write_bytes(LATIN1.encode("utf-16"))
    tok = BPETokenizer.train([LATIN1], 300)
    for name, enc in (("fr.txt", "latin-1"), ("u16.txt", "utf-16")):
        (doc,) = read_documents([str(tmp_path / name)], encoding=enc)
        assert doc.text == LATIN1
        write_shard([doc], tok, tmp_path / name.replace(".", "_"))
        assert tok.decode(Shard.load(tmp_path / name.replace(".", "_")).tokens.tolist()) == LATIN1


def test_replace_counts_what_it_replaced(tmp_path):
    (tmp_path / "fr.txt").write_bytes(LATIN1.encode("latin-1"))
    (doc,) = read_documents([str(tmp_path / "fr.txt")], errors="replace")
    assert doc.replaced == sum(c not in "abcdefghijklmnopqrstuvwxyzDN .,'\n" for c in LATIN1)
    m = write_shard([doc], BPETokenizer.train([LATIN1], 300), tmp_path / "s")
    assert m["replaced_bytes"] == doc.replaced
    assert write_shard([doc], ByteTokenizer(), tmp_path / "b")["replaced_bytes"] == 0  # bytes untouched


def test_binary_files_are_refused_unless_allowed(tmp_path):
    blob = np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes()
    (tmp_path / "model.bin").write_bytes(blob)
    assert non_text_fraction(blob, "utf-8") > BINARY_FRACTION
    assert non_text_fraction(LATIN1.encode("latin-1"), "utf-8") == 0  # text in another encoding is not binary
    assert non_text_fraction(LATIN1.encode("utf-16"), "utf-8") > BINARY_FRACTION  # NULs: says to give --encoding
    assert non_text_fraction(LATIN1.encode("utf-16"), "utf-16") == 0
    with pytest.raises(ValueError, match=r"model.bin: looks binary .*--allow-binary"):
        list(read_documents([str(tmp_path / "model.bin")]))
    (doc,) = read_documents([str(tmp_path / "model.bin")], allow_binary=True)
    assert doc.data == blob


def test_unknown_encoding_is_our_error():
    with pytest.raises(ValueError, match="unknown text encoding 'klingon'"):
        list(read_documents(["embedded"], encoding="klingon"))
    with pytest.raises(ValueError, match="data.encoding.*unknown text encoding"):
        DataConfig(encoding="klingon")
    with pytest.raises(ValueError, match="encoding errors must be one of"):
        DataConfig(encoding_errors="ignore")


def test_lone_document_splits_at_90_percent_of_its_characters_and_keeps_every_byte(tmp_path):
    raw = "".join(f"line {i} é\n" for i in range(200)).encode() + b"\xff\xfe"  # an undecodable tail
    (tmp_path / "one.txt").write_bytes(raw)
    cfg = DataConfig(train=(str(tmp_path / "one.txt"),), cache_dir=str(tmp_path / "cache"))
    train, valid = prepare_splits(cfg, cfg.cache_dir, log=lambda *_: None)
    t, v = bytes(train.tokens.tolist()), bytes(valid.tokens.tolist())
    chars = raw.decode("utf-8", errors="surrogateescape")
    assert t + v == raw and t == chars[: int(len(chars) * 0.9)].encode("utf-8", errors="surrogateescape")


def test_encoding_options_key_the_cache(tmp_path):
    (tmp_path / "fr.txt").write_bytes(LATIN1.encode("latin-1") * 3)
    base = dict(train=(str(tmp_path / "fr.txt"),), tokenizer="bpe", bpe_vocab_size=300, cache_dir=str(tmp_path / "c"))
    with pytest.raises(ValueError, match="not valid utf-8"):
        prepare_splits(DataConfig(**base), tmp_path / "c", log=lambda *_: None)
    train, _ = prepare_splits(DataConfig(**base, encoding="latin-1"), tmp_path / "c", log=lambda *_: None)
    assert train.tokenizer.decode(train.tokens.tolist()).startswith("Dès Noël")
    assert json.loads((train.path / "manifest.json").read_text())["sources"][0]["encoding"] == "latin-1"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(blobs=st.lists(st.binary(min_size=0, max_size=300), min_size=1, max_size=4),
       encoding=st.sampled_from(["utf-8", "latin-1", "utf-16"]), errors=st.sampled_from(["strict", "replace"]),
       allow_binary=st.booleans(), byte_tokenizer=st.booleans())
def test_fuzz_preparation_of_random_byte_files(tmp_path_factory, blobs, encoding, errors, allow_binary,
                                               byte_tokenizer):
    """Random byte files either become a shard (bytes kept exactly by the byte tokenizer) or are
    refused with our ValueError naming a file; nothing else escapes."""
    folder = tmp_path_factory.mktemp("fuzz")
    for i, blob in enumerate(blobs):
        (folder / f"f{i}.txt").write_bytes(blob)
    tok = ByteTokenizer() if byte_tokenizer else BPETokenizer.train(["some text to learn from"], 270)
    try:
        m = write_shard(read_documents([str(folder)], encoding=encoding, errors=errors, allow_binary=allow_binary),
                        tok, folder / "shard")
    except ValueError as e:
        assert ".txt: " in str(e) or "the corpus is empty" in str(e), str(e)
        return
    tokens = Shard.load(folder / "shard").tokens
    assert m["tokens"] == tokens.size > 0
    if byte_tokenizer:
        assert bytes(tokens.tolist()) == b"".join(blobs)
