"""One training step of the synthetic tasks' 2-layer models (H3 section 3.1, width 32), four ways:
eager; the whole model through ``torch.compile`` (``nn.Module.compile``); the ``compile`` and the
``native`` kernel backends (only the selective scan changes). These models are dispatch-bound (a few hundred small
ops per step), so this is where compilation could pay. One torch thread, as synthetic cells run;
medians (eager and the backend interleaved); the compilation itself is timed apart.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from longssm.data.synthetic import make_task
from longssm.experiments.synthetics import model_config
from longssm.layers import configure
from longssm.models import LanguageModel
from longssm.training.optim import adamw, optimizer_step

MODES = ("eager", "compile-model", "compile-backend", "native-backend")


def _stepper(task, model_name: str, mode: str, batch: int):
    torch.manual_seed(0)
    model = LanguageModel(model_config(model_name, task.vocab_size, task.train.shape[1] - 1, 32))
    opt = adamw(model, 5e-4, 0.1, fused=True)
    if mode == "compile-model":
        model.compile()
    elif mode.endswith("-backend"):
        configure(model, backend=mode.removesuffix("-backend"))
    s = task.train[:batch]

    def step() -> float:
        logits, _ = model(s[:, :-1], return_state=False)
        loss = F.cross_entropy(logits.flatten(0, 1), s[:, 1:].flatten())
        loss.backward()
        optimizer_step(model, opt)
        return loss.item()

    t0 = time.perf_counter()
    step()
    step()  # compile (forward and backward) happens in these
    return step, time.perf_counter() - t0


def run(out: Path | None, models=("s4d", "h3", "attention", "mamba"), task_name: str = "induction_head",
        batch: int = 32, repeats: int = 20, progress=print) -> dict:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        task = make_task(task_name, n_train=batch, n_test=1)
        rows = []
        for name in models:
            # eager and the kernel backend interleaved; the compiled model after them, alone: it
            # shares dynamo's per-function caches with the compiled scan and would evict its entries
            steppers, times = {}, {m: [] for m in MODES}
            for group in (("eager", "compile-backend", "native-backend"), ("compile-model",)):
                steppers.update({m: _stepper(task, name, m, batch) for m in group})
                for _ in range(repeats):
                    for m in group:
                        t0 = time.perf_counter()
                        steppers[m][0]()
                        times[m].append(time.perf_counter() - t0)
            med = {m: sorted(ts)[len(ts) // 2] for m, ts in times.items()}
            row = {"model": name, **{f"{m}_ms": med[m] * 1e3 for m in MODES},
                   **{f"{m}_first_steps_s": steppers[m][1] for m in MODES},
                   **{f"{m}_speedup": med["eager"] / med[m] for m in MODES[1:]}}
            rows.append(row)
            progress(f"{name}: eager {row['eager_ms']:.1f} ms, " + ", ".join(
                f"{m} {row[f'{m}_ms']:.1f} ms ({row[f'{m}_speedup']:.2f}x)" for m in MODES[1:]))
    finally:
        torch.set_num_threads(threads)
    result = {"meta": {"torch": torch.__version__, "threads": 1, "task": task_name, "batch": batch,
                       "seq_len": task.train.shape[1] - 1, "repeats": repeats}, "rows": rows}
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")
    return result
