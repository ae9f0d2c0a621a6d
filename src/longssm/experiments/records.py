"""Results files of the experiments: lists of JSON records, read with a check that names the file,
written atomically (a crash never leaves half a file) and merged under a lock (two commands that
share a results file keep each other's records)."""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path


def read_records(path: str | Path, required: set[str], kind: str) -> list[dict]:
    """The records in ``path`` (none if it does not exist). A file that is not a list of records
    holding the ``required`` keys is an error naming it (raised before any training starts)."""
    path = Path(path)
    if not path.exists():
        return []
    try:
        records = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path} is not a JSON results file ({e}); move it away or pass another --out") from e
    if not isinstance(records, list) or not all(isinstance(r, dict) and required <= set(r) for r in records):
        raise ValueError(f"{path} is not a list of {kind} records; move it away or pass another --out")
    return records


def write_atomic(path: str | Path, text: str) -> None:
    """Write ``text`` to a temporary file beside ``path`` and rename it into place."""
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def update_records(path: str | Path, new: list[dict], merge: Callable[[list[dict], list[dict]], list[dict]],
                   load: Callable[[Path], list[dict]]) -> list[dict]:
    """Merge ``new`` into the records file ``path`` and return the merged list. The file is read again
    under an exclusive lock on its folder, so the records another command wrote since this one
    started are kept, not overwritten by this command's older copy."""
    with folder_lock(path):
        records = merge(load(Path(path)), new)
        write_atomic(path, json.dumps(records, indent=1) + "\n")
    return records


@contextmanager
def folder_lock(path: str | Path) -> Iterator[None]:
    """Hold an exclusive lock on the folder of ``path`` (created if missing): the results files in
    one folder are read, merged and rewritten by one command at a time."""
    parent = Path(path).parent
    parent.mkdir(parents=True, exist_ok=True)
    folder = os.open(parent, os.O_RDONLY)
    try:
        fcntl.flock(folder, fcntl.LOCK_EX)
        yield
    finally:
        os.close(folder)  # releases the lock
