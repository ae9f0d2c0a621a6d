"""Results files: merged under a lock, so commands that share one keep each other's records."""

import json
import multiprocessing

from longssm.experiments.records import read_records, update_records


def _load(path):
    return read_records(path, {"cell"}, "test")


def _merge(old, new):
    keys = {r["cell"] for r in new}
    return sorted([r for r in old if r["cell"] not in keys] + new, key=lambda r: r["cell"])


def _writer(args):
    path, first = args
    for cell in range(first, first + 10):
        update_records(path, [{"cell": cell}], _merge, _load)


def test_a_record_written_by_another_command_meanwhile_is_kept(tmp_path):
    path = tmp_path / "results" / "grid.json"
    update_records(path, [{"cell": 1, "v": "old"}], _merge, _load)
    update_records(path, [{"cell": 2}], _merge, _load)  # another command, started before this one finished
    merged = update_records(path, [{"cell": 1, "v": "new"}, {"cell": 3}], _merge, _load)
    assert merged == [{"cell": 1, "v": "new"}, {"cell": 2}, {"cell": 3}]
    assert json.loads(path.read_text()) == merged


def test_concurrent_writers_lose_nothing(tmp_path):
    path = tmp_path / "grid.json"
    with multiprocessing.get_context("fork").Pool(4) as pool:
        pool.map(_writer, [(path, 100 * i) for i in range(4)])
    assert [r["cell"] for r in _load(path)] == [100 * i + k for i in range(4) for k in range(10)]
