"""Multi-process glue, driven by torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK): gloo on
CPU, nccl on GPU. Model code stays single-device; this wraps it from the outside."""

from __future__ import annotations

import contextlib
import os
import socket
from dataclasses import dataclass

import torch
import torch.distributed as tdist


@dataclass
class Distributed:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @classmethod
    def from_env(cls) -> "Distributed":
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world == 1:
            return cls()
        d = cls(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
        if not tdist.is_initialized():
            tdist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        return d

    def device(self, base: torch.device) -> torch.device:
        if base.type == "cuda":
            torch.cuda.set_device(self.local_rank)
            return torch.device("cuda", self.local_rank)
        return base

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        if self.world == 1:
            return model
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.local_rank] if next(model.parameters()).is_cuda else None
        return DistributedDataParallel(model, device_ids=ids)

    def shard(self, model: torch.nn.Module, bf16: bool) -> torch.nn.Module:
        """FSDP2, in place: ``fully_shard`` each block, then the root (embedding, final norm, head),
        as its documentation prescribes; ``step`` registered as a forward method so a sharded model
        generates. With bf16 the blocks compute in bf16 from fp32 parameters (gradients reduced in
        fp32) while every SSM core keeps fp32 parameters, as the cores' precision rules require."""
        if self.world == 1:
            return model
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard, register_fsdp_forward_method

        from longssm.layers.cores import Core

        hints = {n: p._optim for n, p in model.named_parameters() if hasattr(p, "_optim")}  # SSM lr / decay
        policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32) if bf16 \
            else MixedPrecisionPolicy()
        for block in model.backbone.blocks:
            if bf16:
                for core in [m for m in block.modules() if isinstance(m, Core)]:
                    fully_shard(core, mp_policy=MixedPrecisionPolicy(param_dtype=torch.float32))
            fully_shard(block, mp_policy=policy)
            register_fsdp_forward_method(block, "step")  # Backbone.step calls each block's step
        fully_shard(model, mp_policy=policy)
        register_fsdp_forward_method(model, "step")
        for name, p in model.named_parameters():  # sharding made new Parameters: carry the hints over
            if name in hints:
                p._optim = hints[name]
        return model

    def no_sync(self, net):
        return net.no_sync() if self.world > 1 and hasattr(net, "no_sync") else contextlib.nullcontext()

    def mean(self, value: torch.Tensor) -> torch.Tensor:
        if self.world > 1:
            value = value.clone()
            tdist.all_reduce(value)
            value /= self.world
        return value

    def gather(self, obj):
        """Every process's object, in rank order (on rank 0; others get the same list)."""
        if self.world == 1:
            return [obj]
        out = [None] * self.world
        tdist.all_gather_object(out, obj)
        return out

    def broadcast(self, obj):
        """Rank 0's ``obj`` in every process."""
        if self.world == 1:
            return obj
        box = [obj]
        tdist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self):
        if self.world > 1:
            tdist.barrier()

    @contextlib.contextmanager
    def rank0_first(self):
        """Rank 0 runs the block first (e.g. prepares data), then the others."""
        if self.rank != 0:
            self.barrier()
        yield
        if self.rank == 0:
            self.barrier()

    def log(self, fn):
        return fn if self.rank == 0 else (lambda *a, **k: None)

    def close(self, orderly: bool = True):
        """Leave the process group. ``orderly``: after a barrier, so that no rank tears its
        connections down while a peer still completes the last collective (gloo then aborts a
        process: 'terminate called without an active exception', about 1 run in 12 of the sharded
        generation test). Without it (after an error, when a peer may be gone) nothing waits."""
        if self.world > 1 and tdist.is_initialized():
            if orderly:
                tdist.barrier()
            tdist.destroy_process_group()


def spawn_local(fn, world: int, *args) -> None:
    """Run ``fn(*args)`` in ``world`` fresh processes on this machine, each with the environment
    torchrun would give it (RANK, WORLD_SIZE, LOCAL_RANK, a free port on 127.0.0.1), so that
    :meth:`Distributed.from_env` joins them (tests and benchmarks; ``fn`` must be importable)."""
    import torch.multiprocessing as mp

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    mp.start_processes(_local_process, args=(fn, world, port, args), nprocs=world, start_method="spawn")


def _local_process(rank: int, fn, world: int, port: int, args: tuple) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    fn(*args)
