"""Results files of the experiments: lists of JSON records, read with a check that names the file,
written atomically (a crash never leaves half a file)."""

from __future__ import annotations

import json
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
