"""Sharded checkpoints of FSDP runs through ``torch.distributed.checkpoint`` (DCP).

Each process writes its own shards of the model and optimizer state into one folder, and any
number of processes reads them back, each taking the pieces of its own sharding: 2 -> 1, 1 -> 2,
or a plain single-process module (DCP needs no process group then). The state dicts are
``torch.distributed.checkpoint.state_dict``'s: keyed by parameter names, optimizer state included,
the same for sharded and unsharded models.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import torch
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.state_dict import (StateDictOptions, get_model_state_dict, get_state_dict,
                                                     set_model_state_dict, set_state_dict)


def save_sharded(folder: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
    """Every process calls this with the same ``folder``: its shards of model and optimizer."""
    model_sd, optim_sd = get_state_dict(model, optimizer)
    dcp.save({"model": model_sd, "optimizer": optim_sd}, checkpoint_id=str(folder))


def load_sharded(folder: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None = None) -> None:
    """The model (and optimizer) state in ``folder`` into this process's ``model`` / ``optimizer``,
    whatever the number of processes that wrote it."""
    if optimizer is None:
        sd = {"model": get_model_state_dict(model)}
        dcp.load(sd, checkpoint_id=str(folder))
        set_model_state_dict(model, sd["model"])
        return
    model_sd, optim_sd = get_state_dict(model, optimizer)
    sd = {"model": model_sd, "optimizer": optim_sd}
    dcp.load(sd, checkpoint_id=str(folder))
    set_state_dict(model, optimizer, model_state_dict=sd["model"], optim_state_dict=sd["optimizer"])


def load_full_into_sharded(model: torch.nn.Module, optimizer: torch.optim.Optimizer, weights: dict,
                           optim_state: dict) -> None:
    """A single-process checkpoint (full weights by name; ``optimizer.state_dict()`` keyed by
    parameter index in the optimizer's group order) into a sharded model and its optimizer."""
    names = {id(p): n for n, p in model.named_parameters()}
    order = [names[id(p)] for g in optimizer.param_groups for p in g["params"]]
    state = {order[i]: v for i, v in optim_state["state"].items()}
    groups = [{**g, "params": [order[i] for i in g["params"]]} for g in optim_state["param_groups"]]
    set_state_dict(model, optimizer, model_state_dict=weights, optim_state_dict={"state": state, "param_groups": groups},
                   options=StateDictOptions(full_state_dict=True))


@contextlib.contextmanager
def root_gathered(model: torch.nn.Module):
    """Inside: an FSDP root's own parameters (embedding, final norm, head) gathered, for code that
    calls its submodules directly instead of its forward (chunked evaluation); nothing otherwise.
    The blocks gather themselves in their own forwards."""
    if not hasattr(model, "unshard"):
        yield
        return
    model.unshard()
    try:
        yield
    finally:
        model.reshard()
