"""Corpora as documents: local files, folders and globs of text, Hugging Face datasets (optional),
and the embedded default corpus (documentation of Python's standard library).

Each file or record is one document, never shuffled inside. A document keeps its raw bytes: the
byte tokenizer takes them unchanged (any bytes are valid), while text tokenizers decode them with
the configured encoding (UTF-8 by default). A decoding error names the file and the offset of the
first offending byte, unless ``errors="replace"`` asks for U+FFFD replacement (counted). A file
that looks binary (more than 5% control characters other than whitespace) is refused unless
``allow_binary``.
"""

from __future__ import annotations

import codecs
import glob
import hashlib
import inspect
import importlib
import re
import warnings
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Iterator, Sequence

ERRORS = ("strict", "replace")
BINARY_SAMPLE = 1 << 20  # bytes of a file inspected by the binary check
BINARY_FRACTION = 0.05  # more than this share of control characters in the sample: binary
# C0/C1 control characters other than whitespace (tab, newline, vertical tab, form feed, carriage
# return) and escape: what text rarely holds and binary data does (about 10% of random bytes).
# Undecodable bytes do not count: text in another encoding is not binary, and says so on decoding.
_NON_TEXT = re.compile("[\\x00-\\x08\\x0e-\\x1a\\x1c-\\x1f\\x7f-\\x9f]")


@dataclass(frozen=True)
class Document:
    name: str  # file path, dataset record id, or module name
    data: bytes  # the raw bytes (a dataset's or the embedded corpus's text as UTF-8)
    encoding: str = "utf-8"
    errors: str = "strict"  # or "replace": invalid sequences become U+FFFD, counted in ``replaced``

    @cached_property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @cached_property
    def text(self) -> str:
        """The bytes decoded with ``encoding``; a ValueError names the file and the first bad byte."""
        try:
            return self.data.decode(self.encoding)
        except UnicodeDecodeError as e:
            if self.errors == "replace":
                return self.data.decode(self.encoding, errors="replace")
            raise ValueError(f"{self.name}: not valid {self.encoding} at byte {e.start} "
                             f"(0x{self.data[e.start]:02x}); give its encoding (--encoding, data.encoding, "
                             f"e.g. latin-1) or replace bad bytes with U+FFFD (--encoding-errors replace)") from None

    @cached_property
    def replaced(self) -> int:
        """Invalid byte sequences replaced by U+FFFD when the text is decoded (0 under "strict")."""
        if self.errors != "replace":
            return 0
        return self.text.count("\ufffd") - self.data.decode(self.encoding, errors="ignore").count("\ufffd")


def check_encoding(encoding: str, errors: str) -> None:
    """ValueError for an encoding Python does not know or an error mode other than ERRORS."""
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise ValueError(f"unknown text encoding {encoding!r} (expected a Python codec name such as "
                         f"'utf-8', 'latin-1', 'cp1252', 'utf-16')") from None
    if errors not in ERRORS:
        raise ValueError(f"encoding errors must be one of {ERRORS}, got {errors!r}")


def non_text_fraction(data: bytes, encoding: str) -> float:
    """Share of the characters of the first BINARY_SAMPLE bytes (decoded with replacement) that
    are control characters other than whitespace and escape."""
    sample = data[:BINARY_SAMPLE].decode(encoding, errors="replace")
    return len(_NON_TEXT.findall(sample)) / max(1, len(sample))


def _expand(source: str) -> list[Path]:
    p = Path(source)
    if p.is_dir():
        return sorted(q for q in p.rglob("*") if q.is_file() and not q.name.startswith("."))
    if p.is_file():
        return [p]
    matches = sorted(Path(m) for m in glob.glob(source, recursive=True) if Path(m).is_file())
    if not matches:
        raise FileNotFoundError(f"corpus source {source!r} matches no file")
    return matches


def _hf_documents(source: str) -> Iterator[Document]:
    try:
        import datasets
    except ImportError:
        raise ImportError("Hugging Face corpora need the optional extra: pip install 'longssm[datasets]'") from None
    spec = source[len("hf:"):]
    name, _, split = spec.partition(":")
    ds = datasets.load_from_disk(name) if Path(name).exists() else datasets.load_dataset(name, split=split or "train")
    if isinstance(ds, datasets.DatasetDict):
        ds = ds[split or "train"]
    for i, record in enumerate(ds):
        yield Document(f"{source}#{i}", record["text"].encode("utf-8"))


def read_documents(sources: Sequence[str], *, encoding: str = "utf-8", errors: str = "strict",
                   allow_binary: bool = False) -> Iterator[Document]:
    """Documents from files, folders, globs, ``hf:NAME[:SPLIT]`` or ``embedded``. Files are read
    as raw bytes and decoded (lazily, see :class:`Document`) with ``encoding``; a file whose
    first MiB is more than 5% control characters is refused unless ``allow_binary``."""
    check_encoding(encoding, errors)
    for source in sources:
        if source == "embedded":
            yield from embedded_documents()
        elif source.startswith("hf:"):
            yield from _hf_documents(source)
        else:
            for path in _expand(source):
                raw = path.read_bytes()
                if not allow_binary and (frac := non_text_fraction(raw, encoding)) > BINARY_FRACTION:
                    raise ValueError(f"{path}: looks binary ({frac:.0%} of its first characters are control "
                                     f"characters in {encoding}); pass --allow-binary (data.allow_binary) "
                                     f"to use it anyway, or --encoding if it is text in another encoding")
                yield Document(str(path), raw, encoding, errors)


# Standard-library modules whose documentation forms the embedded corpus (a fixed list, so the
# corpus is the same wherever the same Python version runs).
EMBEDDED_MODULES = (
    "abc argparse array ast asyncio base64 bisect builtins bz2 calendar cmath codecs collections "
    "colorsys concurrent.futures configparser contextlib copy csv ctypes dataclasses datetime decimal "
    "difflib dis doctest email enum filecmp fnmatch fractions ftplib functools gc getopt gettext glob "
    "gzip hashlib heapq hmac html html.parser http.client http.server imaplib inspect io ipaddress "
    "itertools json keyword linecache locale logging lzma mailbox math mimetypes multiprocessing "
    "numbers operator optparse os os.path pathlib pickle pickletools platform plistlib poplib pprint "
    "profile pstats queue quopri random re reprlib sched secrets select selectors shelve shlex shutil "
    "signal smtplib socket socketserver sqlite3 ssl stat statistics string struct subprocess symtable "
    "sys tarfile tempfile textwrap threading time timeit token tokenize trace traceback types typing "
    "unittest urllib.parse urllib.request uuid warnings wave weakref xml.dom xml.etree.ElementTree "
    "zipfile zlib asyncio.events asyncio.tasks asyncio.streams asyncio.queues asyncio.locks "
    "asyncio.base_events collections.abc email.message email.utils email.policy http.cookiejar "
    "http.cookies importlib.metadata importlib.resources logging.handlers multiprocessing.pool "
    "multiprocessing.connection unittest.case unittest.mock xml.sax xmlrpc.client xmlrpc.server "
    "pydoc pdb bdb cmd code codeop contextvars graphlib tomllib zipimport zoneinfo tracemalloc "
    "sysconfig runpy pkgutil modulefinder netrc nntplib mailcap imghdr sndhdr telnetlib"
).split()


def _documented(owner, prefix: str, module: str, depth: int) -> list[str]:
    """Docstrings of the public classes and functions defined in ``module`` (and of the classes'
    own methods), depth-first in name order."""
    parts = []
    for attr in sorted(vars(owner)):
        obj = vars(owner)[attr]
        if attr.startswith("_") or not (inspect.isclass(obj) or inspect.isroutine(obj)):
            continue
        if getattr(obj, "__module__", module) != module:
            continue
        doc = inspect.getdoc(obj)
        if doc:
            parts.append(f"{prefix}.{attr}\n\n{doc}")
        if depth and inspect.isclass(obj):
            parts += _documented(obj, f"{prefix}.{attr}", module, depth - 1)
    return parts


def _module_text(name: str) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        module = importlib.import_module(name)
        parts = [f"Module {name}\n\n{inspect.getdoc(module) or ''}"] + _documented(module, name, name, 1)
    return "\n\n".join(parts) + "\n"


def embedded_documents() -> Iterator[Document]:
    """One document per module: its docstring and those of its public classes and functions."""
    for name in EMBEDDED_MODULES:
        try:
            text = _module_text(name)
        except ImportError:  # a module this Python build lacks (e.g. no _ssl): skipped
            continue
        yield Document(f"python-stdlib:{name}", text.encode("utf-8"))
