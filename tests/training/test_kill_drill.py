"""The kill drill (tests/training/kill_drill.py) with 20 SIGKILLs: the run finishes, every step's
loss equals the uninterrupted run's, each step is logged once, the newest checkpoint verifies after
every kill, and no temporary file remains."""

import pytest

from kill_drill import drill


@pytest.mark.slow
def test_kill_drill(tmp_path):
    figures = drill(tmp_path, kills=20, seed=0)
    assert figures["kills"] == 20 and figures["final_step"] == figures["steps_compared"]
    assert figures["mismatches"] == 0 and figures["steps_logged_twice"] == 0
    assert figures["kills_leaving_no_verified_checkpoint"] == 0 and figures["temporary_files_left"] == 0
