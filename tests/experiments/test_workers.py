"""A parallel grid whose parent is killed leaves no worker running."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest


def children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc; the parent-death signal is Linux's")
def test_killing_a_grid_stops_its_workers(tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "longssm.cli.main", "experiment", "smr", "--tasks", "sines",
                             "--cores", "s4d", "--set", "smr.steps=1000000", "--set", "smr.d_model=8",
                             "--jobs", "2", "--out", str(tmp_path / "smr")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while len(workers := [c for c in children(proc.pid) if alive(c)]) < 2:
        assert proc.poll() is None and time.time() < deadline, "the grid did not start two workers"
        time.sleep(0.5)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.time() + 30
    while any(alive(w) for w in workers):
        assert time.time() < deadline, f"workers {[w for w in workers if alive(w)]} outlived the killed grid"
        time.sleep(0.5)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal is Linux's")
def test_a_worker_whose_parent_died_before_it_asked_stops_itself():
    """A parent killed between spawning a worker and the worker's prctl sends no signal (seen under
    load: two orphans waited on their task queue); the worker checks its parent after asking."""
    ask = "import os, time; from longssm.experiments.workers import die_with_parent; die_with_parent({}); "
    orphan = subprocess.run([sys.executable, "-c", ask.format("os.getppid() + 1") + "time.sleep(60)"], timeout=50)
    assert orphan.returncode == -signal.SIGTERM
    child = subprocess.run([sys.executable, "-c", ask.format("os.getppid()") + "print('running')"], timeout=50,
                           capture_output=True, text=True)
    assert child.returncode == 0 and child.stdout == "running\n"


@pytest.mark.parametrize("fresh", [True, False], ids=["spawned", "in-process"])
def test_an_interrupted_cell_gets_no_record_and_stops_the_grid(fresh):
    """A cell returns None when its training was interrupted (it saved a checkpoint): that is not a
    result, and no further cell starts, so one Ctrl-C ends the grid (only the cells running beside
    it finish)."""
    from operator import itemgetter

    from longssm.experiments.workers import run_cells

    later = [{"r": i} for i in range(10, 20)]
    for jobs, cells in ((1, [{"r": 1}, {"r": None}]), (2, [{"r": None}, {"r": 1}])):
        done = []
        assert run_cells(itemgetter("r"), cells + later, jobs=jobs, on_done=done.append, fresh=fresh) is False
        assert done == [1], f"jobs={jobs}: cells ran after the interruption: {done}"
    done = []
    assert run_cells(itemgetter("r"), [{"r": 1}, {"r": 2}], jobs=2, on_done=done.append, fresh=fresh) is True
    assert sorted(done) == [1, 2]


def test_the_grid_bar_follows_the_steps_its_workers_log(tmp_path):
    """Workers train without bars; the parent's bar reads their metrics.jsonl, counting the steps
    a resumed run had already done (up to its checkpoint when it was killed after it), and skips a
    torn last line."""
    import json
    import threading

    from longssm.experiments.workers import last_step, watch_runs

    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    for run, logged, saved in ((a, 30, 30), (c, 45, 20)):  # c was killed 25 steps after its checkpoint
        (run / "checkpoints" / f"step_{saved}").mkdir(parents=True)
        (run / "checkpoints" / f"step_{saved}" / "record.json").write_text(json.dumps({"step": saved}))
        (run / "checkpoints" / "latest").write_text(f"step_{saved}")
        (run / "metrics.jsonl").write_text(json.dumps({"step": logged, "loss": 1.0}) + "\n")
    assert last_step(a) == 30 and last_step(b) == 0 and last_step(c) == 45

    def worker():
        b.mkdir()
        for step in (10, 20):
            with open(b / "metrics.jsonl", "a") as f:
                f.write(json.dumps({"step": step, "loss": 1.0}) + "\n" + json.dumps({"step": step, "val_loss": 2.0}) + "\n")
            time.sleep(0.05)
        with open(b / "metrics.jsonl", "a") as f:
            f.write('{"step": 3')  # killed mid-line

    with watch_runs([(a, 50), (b, 40), (c, 60)], "test", every=0.01) as bar:
        assert (bar.n, bar.total) == (50, 150)  # c's steps after its checkpoint will be trained again
        thread = threading.Thread(target=worker)
        thread.start()
        thread.join()
        (c / "metrics.jsonl").write_text(json.dumps({"step": 30, "loss": 1.0}) + "\n")  # c resumed: cut, then on
        deadline = time.time() + 5
        while bar.n != 80:
            assert time.time() < deadline, f"the bar stayed at {bar.n}"
            time.sleep(0.01)
    assert last_step(b) == 20


def test_grid_runs_checkpoint_at_most_50_steps_apart():
    from longssm.experiments.lm_compare import LMCompareConfig, run_config
    from longssm.experiments.workers import checkpoint_every

    assert [checkpoint_every(n) for n in (3, 120, 1200, 2048)] == [1, 20, 50, 50]
    assert run_config(LMCompareConfig(), "final", "h3", 1e-3, 0)["train"]["checkpoint_every"] == 50
