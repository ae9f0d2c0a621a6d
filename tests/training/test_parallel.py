"""Training across processes on CPU (gloo): DDP, FSDP2 and FSDP2 with activation checkpointing
give the single process's losses; sharded checkpoints resume across process counts (2 -> 1,
1 -> 2, carried states redistributed); a sharded model generates what the gathered one does."""

import json
import math

import pytest
import torch

from longssm.training.config import resolve
from longssm.training.distributed import spawn_local
from longssm.training.loop import train
from conftest import corpus

MODEL = {"n_layer": 2, "d_model": 16, "mixers": ["h3", "attention"],
         "mixer_options": {"h3": {"d_state": 8, "shift_state": 4}, "attention": {"n_heads": 2}}}


def _config(data, out, **train):
    return resolve({
        "model": MODEL,
        "data": {"train": [str(data / "doc*.txt")], "valid": [str(data / "valid.txt")]},
        "train": {"steps": 3, "batch_size": 4, "seq_len": 16, "warmup_steps": 1, "eval_every": 0, "eval_batches": 1,
                  "checkpoint_every": 3, "log_every": 1, "out_dir": str(out), **train},
    })


def _worker(data, out, train_kw, resume):
    torch.set_num_threads(1)
    train(_config(data, out, **train_kw), resume=resume, progress=False, log=lambda *_: None)


def run(world, data, out, resume=False, **train_kw):
    if world == 1:
        torch.set_num_threads(1)
        return train(_config(data, out, **train_kw), resume=resume, progress=False, log=lambda *_: None)
    spawn_local(_worker, world, data, out, train_kw, resume)


def losses(out):
    return [r["loss"] for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if "loss" in r]


@pytest.mark.slow
@pytest.mark.parametrize("state_init", ["zero", "previous"])
def test_ddp_fsdp_and_checkpointed_fsdp_match_one_process(tmp_path, state_init):
    data = corpus(tmp_path)
    runs = {"one": (1, {}), "ddp": (2, {}), "fsdp": (2, {"parallel": "fsdp"}),
            "fsdp+ac": (2, {"parallel": "fsdp", "activation_checkpointing": True}),
            "fsdp, 2 micro-batches": (2, {"parallel": "fsdp", "accumulate": 2})}
    got = {}
    for name, (world, kw) in runs.items():
        run(world, data, tmp_path / name.replace(" ", "_"), state_init=state_init, **kw)
        got[name] = losses(tmp_path / name.replace(" ", "_"))
    assert len(got["one"]) == 3
    for name in runs:
        assert max(abs(a - b) for a, b in zip(got[name], got["one"])) <= 1e-5, (name, got[name], got["one"])
    # the sharded run's checkpoint (torch.distributed.checkpoint shards) loads into one process
    from longssm.models.checkpoint import load_model

    sharded, one = load_model(tmp_path / "fsdp")[0], load_model(tmp_path / "one")[0]
    assert (tmp_path / "fsdp" / "checkpoints" / "step_0000003" / "dcp").is_dir()
    for (name, p), q in zip(sharded.named_parameters(), one.parameters()):
        assert (p - q).abs().max().item() <= 1e-5, name


@pytest.mark.slow
@pytest.mark.parametrize("path", [(2, 1), (1, 2)], ids=["2->1", "1->2"])
def test_resume_across_process_counts(tmp_path, path):
    data = corpus(tmp_path)
    first, then = path
    kw = {"state_init": "previous", "steps": 6, "checkpoint_every": 3, "warmup_steps": 3}  # the same lr at steps 1-3
    run(1, data, tmp_path / "straight", **kw)
    run(first, data, tmp_path / "split", **{**kw, "steps": 3}, **({"parallel": "fsdp"} if first > 1 else {}))
    run(then, data, tmp_path / "split", resume=True, **kw, **({"parallel": "fsdp"} if then > 1 else {}))
    a, b = losses(tmp_path / "straight"), losses(tmp_path / "split")
    assert len(a) == len(b) == 6
    # 1 and 2 processes sum gradients in different orders: 1e-5 to 2.4e-5 apart after 6 steps (measured);
    # a lost optimizer state or schedule step is 1e-2 apart (measured while writing this test)
    assert max(abs(x - y) for x, y in zip(a, b)) <= 5e-5, (a, b)


def _shard_worker(out):
    torch.set_num_threads(1)
    from longssm.models import LanguageModel, generate, model_config
    from longssm.training.distributed import Distributed
    from longssm.training.optim import param_groups

    dist = Distributed.from_env()
    rank = dist.rank

    def build():
        torch.manual_seed(0)
        return LanguageModel(model_config("h3", vocab_size=64, d_model=16, n_layer=2, attention_at=(1,))).eval()

    def groups(model):
        names = {id(p): n for n, p in model.named_parameters()}
        return sorted((g["lr"], g["weight_decay"], sorted(names[id(p)] for p in g["params"]))
                      for g in param_groups(model, 1e-3, 0.1))

    whole, sharded = build(), dist.shard(build(), bf16=False)
    same_groups = groups(whole) == groups(sharded)  # as training builds its optimizer: right after sharding
    prompt = torch.randint(0, 64, (2, 7), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        a = generate(whole, prompt, 8, temperature=0.0, return_scores=True)
        b = generate(sharded, prompt, 8, temperature=0.0, return_scores=True)
    result = {"same_tokens": torch.equal(a.tokens, b.tokens), "max_score_diff": (a.scores - b.scores).abs().max().item(),
              "same_groups": same_groups, "sharded": any(hasattr(p, "device_mesh")
                                                                              for p in sharded.parameters())}
    if rank == 0:
        (out / "result.json").write_text(json.dumps(result))
    dist.close()


@pytest.mark.slow
def test_a_sharded_model_generates_as_the_gathered_one_and_keeps_its_optimiser_groups(tmp_path):
    spawn_local(_shard_worker, 2, tmp_path)
    got = json.loads((tmp_path / "result.json").read_text())
    assert got["sharded"] and got["same_groups"] and got["same_tokens"], got
    assert got["max_score_diff"] <= 1e-5, got


@pytest.mark.slow
def test_bench_parallel_measures_each_configuration(tmp_path):
    from longssm.cli.main import main

    out = tmp_path / "parallel.json"
    assert main(["bench", "parallel", "--quick", "--out", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [(r["processes"], r["activation_checkpointing"]) for r in rows] == [(1, False), (1, True), (2, False), (2, True)]
    assert all(r["peak_mb_per_process"] > 0 and r["step_s"] > 0 for r in rows)


def _bf16_worker(out):
    torch.set_num_threads(1)
    from longssm.layers.cores import Core
    from longssm.models import LanguageModel, model_config
    from longssm.training.distributed import Distributed
    from longssm.training.optim import adamw, optimizer_step

    dist = Distributed.from_env()
    rank = dist.rank
    torch.manual_seed(0)
    model = dist.shard(LanguageModel(model_config("h3", vocab_size=64, d_model=16, n_layer=2, attention_at=(1,))),
                       bf16=True)
    seen = {}

    def record(name, params):
        return lambda mod, args: seen.setdefault(name, sorted({str(p.dtype) for p in params(mod)})) and None

    for name, mod in model.named_modules():
        if isinstance(mod, Core):
            mod.register_forward_pre_hook(record(name, lambda m: m.parameters(recurse=False)))
        elif isinstance(mod, torch.nn.Linear) and ".blocks." in name:
            mod.register_forward_pre_hook(record(name, lambda m: [m.weight]))
    opt = adamw(model, 1e-3, 0.1)
    ids = torch.randint(0, 64, (2, 16), generator=torch.Generator().manual_seed(rank))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits, _ = model(ids[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.float().flatten(0, 1), ids[:, 1:].flatten())
    loss.backward()
    optimizer_step(model, opt, 1.0)
    if rank == 0:
        (out / "result.json").write_text(json.dumps({"loss": loss.item(), "seen": seen,
                                                     "stored": sorted({str(p.dtype) for p in model.parameters()})}))
    dist.close()


@pytest.mark.slow
def test_bf16_policy_computes_blocks_in_bf16_and_cores_in_fp32(tmp_path):
    """The GPU mixed-precision policy, run on CPU/gloo: parameters stored in fp32, the blocks'
    projections computed from bf16 copies, every SSM core from fp32 ones."""
    spawn_local(_bf16_worker, 2, tmp_path)
    got = json.loads((tmp_path / "result.json").read_text())
    cores = {k: v for k, v in got["seen"].items() if k.endswith((".shift", ".diag"))}
    linears = {k: v for k, v in got["seen"].items() if k not in cores}
    assert cores and all(v == ["torch.float32"] for v in cores.values()), got
    assert linears and all(v == ["torch.bfloat16"] for v in linears.values()), got
    assert got["stored"] == ["torch.float32"] and math.isfinite(got["loss"])
