"""examples/slurm_fsdp.sh: its longssm command line resolves to a valid run config (every key
exists, every value has its type) without training anything."""

import re
import shlex
from pathlib import Path

from longssm.cli.commands import run_config
from longssm.cli.main import build_parser

SCRIPT = Path(__file__).parents[2] / "examples" / "slurm_fsdp.sh"


def test_slurm_example_resolves_to_an_fsdp_run():
    text = SCRIPT.read_text().replace("\\\n", " ")
    line = next(ln for ln in text.splitlines() if "-m longssm.cli.main train" in ln)
    line = line.split("-m longssm.cli.main", 1)[1]
    line = line.replace('"${resume[@]}"', "")
    for var, value in (("train_glob", "data/*.txt"), ("valid", "valid.txt"), ("run_dir", "runs/big")):
        line = line.replace(f"${var}", value)
    argv = shlex.split(line)
    assert not any("$" in a for a in argv), argv
    cfg = run_config(build_parser().parse_args(argv))
    assert cfg.train.parallel == "fsdp" and cfg.train.activation_checkpointing and cfg.train.seq_len == 2048
    assert cfg.model_config(50280).d_model == 2560 and re.search(r"rdzv_backend c10d", text)
