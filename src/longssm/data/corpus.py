"""Corpora as documents: local files, folders and globs of text, Hugging Face datasets (optional),
and the embedded default corpus (documentation of Python's standard library).

Each file or record is one document, never shuffled inside. Bytes that are not valid UTF-8 are
decoded with U+FFFD replacement and counted, never fatal.
"""

from __future__ import annotations

import glob
import hashlib
import inspect
import importlib
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence


@dataclass(frozen=True)
class Document:
    name: str  # file path, dataset record id, or module name
    text: str
    sha256: str  # of the raw bytes
    replaced: int  # invalid UTF-8 sequences replaced by U+FFFD


def decode_counting(raw: bytes) -> tuple[str, int]:
    """UTF-8 decode with replacement; returns the text and the number of replacements made."""
    text = raw.decode("utf-8", errors="replace")
    if "\ufffd" not in text:
        return text, 0
    return text, text.count("\ufffd") - raw.decode("utf-8", errors="ignore").count("\ufffd")


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
        raise ImportError("Hugging Face corpora need the optional extra: pip install 'longssm[hf]'") from None
    spec = source[len("hf:"):]
    name, _, split = spec.partition(":")
    ds = datasets.load_from_disk(name) if Path(name).exists() else datasets.load_dataset(name, split=split or "train")
    if isinstance(ds, datasets.DatasetDict):
        ds = ds[split or "train"]
    for i, record in enumerate(ds):
        text = record["text"]
        yield Document(f"{source}#{i}", text, hashlib.sha256(text.encode()).hexdigest(), 0)


def read_documents(sources: Sequence[str]) -> Iterator[Document]:
    """Documents from files, folders, globs, ``hf:NAME[:SPLIT]`` or ``embedded``."""
    for source in sources:
        if source == "embedded":
            yield from embedded_documents()
        elif source.startswith("hf:"):
            yield from _hf_documents(source)
        else:
            for path in _expand(source):
                raw = path.read_bytes()
                text, replaced = decode_counting(raw)
                yield Document(str(path), text, hashlib.sha256(raw).hexdigest(), replaced)


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
        yield Document(f"python-stdlib:{name}", text, hashlib.sha256(text.encode()).hexdigest(), 0)
