"""Peak memory per process and step time of one training step, 1 process against 2 FSDP2 processes,
with and without activation checkpointing (``longssm bench parallel``; gloo on CPU).

Every configuration runs in fresh processes (peak resident memory is a per-process high-water
mark): the preset's model in fp32, AdamW, a warm-up step (which allocates the optimizer state),
then timed steps on random tokens. The global batch is the same for both process counts (each of
2 processes takes half the rows), so the work per step is the same.
"""

from __future__ import annotations

import json
import os
import resource
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from longssm.models import LanguageModel, count_parameters, get_preset, set_activation_checkpointing
from longssm.training.distributed import Distributed, spawn_local
from longssm.training.optim import adamw, optimizer_step

CONFIGS = ((1, False), (1, True), (2, False), (2, True))  # (processes, activation checkpointing)


def _worker(preset: str, vocab: int, rows: int, seq_len: int, steps: int, checkpointing: bool, out: str) -> None:
    dist = Distributed.from_env()
    rank, world = dist.rank, dist.world
    torch.set_num_threads(max(1, (os.cpu_count() or 2) // world))
    torch.manual_seed(0)
    model = LanguageModel(get_preset(preset, vocab_size=vocab))
    params = count_parameters(model)
    if checkpointing:
        set_activation_checkpointing(model)
    dist.shard(model, bf16=False)
    opt = adamw(model, 1e-4, 0.1)
    ids = torch.randint(0, vocab, (rows // world, seq_len + 1), generator=torch.Generator().manual_seed(rank))
    times = []
    for _ in range(steps + 1):
        t0 = time.perf_counter()
        logits, _ = model(ids[:, :-1], return_state=False)
        F.cross_entropy(logits.flatten(0, 1), ids[:, 1:].flatten()).backward()
        optimizer_step(model, opt, 1.0)
        dist.barrier()
        times.append(time.perf_counter() - t0)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    Path(out, f"rank{rank}.json").write_text(json.dumps({"peak_mb": peak_mb, "step_s": min(times[1:]),
                                                         "params": params}))
    dist.close()


def run(out: Path | None, preset: str = "hybrid-h3-355m", vocab: int = 50280, rows: int = 2, seq_len: int = 512,
        steps: int = 2, configs=CONFIGS, progress=print) -> dict:
    rows_out = []
    for world, checkpointing in configs:
        with tempfile.TemporaryDirectory() as tmp:
            spawn_local(_worker, world, preset, vocab, rows, seq_len, steps, checkpointing, tmp)
            per_rank = [json.loads(Path(tmp, f"rank{r}.json").read_text()) for r in range(world)]
        row = {"processes": world, "activation_checkpointing": checkpointing,
               "peak_mb_per_process": max(r["peak_mb"] for r in per_rank),
               "step_s": max(r["step_s"] for r in per_rank), "params": per_rank[0]["params"]}
        rows_out.append(row)
        progress(f"{preset}, {world} process(es), activation checkpointing {'on' if checkpointing else 'off'}: "
                 f"peak {row['peak_mb_per_process']:,.0f} MB per process, step {row['step_s']:.1f} s")
    result = {"meta": {"torch": torch.__version__, "preset": preset, "vocab": vocab, "global_rows": rows,
                       "seq_len": seq_len, "timed_steps": steps, "cpu_count": os.cpu_count()}, "rows": rows_out}
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")
    return result
