"""Distributed set-up: the process group from the environment, and the reductions the engine needs."""
from __future__ import annotations

import datetime as _dt
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from bench.engine.execution import Execution


@dataclass(frozen=True)
class DistContext:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(execution: Execution) -> DistContext:
    """Join the process group described by the environment (torchrun or submitit exports
    RANK/WORLD_SIZE/LOCAL_RANK/MASTER_ADDR/MASTER_PORT). A process launched into a group of one
    (WORLD_SIZE=1) joins it too, so one GPU runs the very NCCL/DDP path many do; a plain process
    needs none of it."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = execution.device == "cuda" or (execution.device == "auto" and torch.cuda.is_available())
    if use_cuda and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' was asked for but CUDA is not available on this machine")
    device = torch.device("cuda", local_rank % torch.cuda.device_count()) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(device)
    if "WORLD_SIZE" in os.environ and not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo", init_method="env://",
                                rank=rank, world_size=world_size,
                                timeout=_dt.timedelta(minutes=30))
    return DistContext(rank, world_size, local_rank, device)


def all_reduce(tensor: torch.Tensor, ctx: DistContext, op=None) -> torch.Tensor:
    if ctx.world_size > 1:
        backend_device = ctx.device if ctx.device.type == "cuda" else torch.device("cpu")
        moved = tensor.to(backend_device)
        dist.all_reduce(moved, op=op or dist.ReduceOp.SUM)
        return moved.to(tensor.device)
    return tensor


def all_union(items: set, ctx: DistContext) -> set:
    if ctx.world_size == 1:
        return items
    gathered: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(gathered, items)
    return set().union(*gathered)
