"""How a global batch is split over ranks and accumulation steps, and which samples were replaced or
read by the fallback reader."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

from bench.engine.seeding import epoch_order


@dataclass(frozen=True)
class StepPlan:
    """How a global batch is split: over ranks, then into gradient-accumulation micro-batches."""

    global_batch: int
    world_size: int
    micro_batch: int

    @property
    def per_rank(self) -> int:
        return self.global_batch // self.world_size

    @property
    def accumulation(self) -> int:
        return self.per_rank // self.micro_batch

    @classmethod
    def make(cls, global_batch: int, world_size: int, batch_per_device: int | None) -> "StepPlan":
        if global_batch % world_size:
            raise ValueError(f"global batch {global_batch} does not split over {world_size} processes; "
                             "choose a batch size that is a multiple of the number of GPUs")
        per_rank = global_batch // world_size
        micro = per_rank if batch_per_device is None else min(batch_per_device, per_rank)
        while per_rank % micro:  # largest micro-batch <= the asked one that divides the rank's share
            micro -= 1
        return cls(global_batch, world_size, micro)


def train_batches(num_samples: int, plan: StepPlan, rank: int, seed: int, epoch: int) -> list[list[int]]:
    """This rank's micro-batches for one epoch, ``plan.accumulation`` per optimizer step; the
    incomplete last global batch is dropped so every step has the same size."""
    order = epoch_order(num_samples, seed, epoch).tolist()
    batches = []
    for step in range(num_samples // plan.global_batch):
        mine = order[step * plan.global_batch + rank * plan.per_rank:][:plan.per_rank]
        batches.extend(mine[i:i + plan.micro_batch] for i in range(0, plan.per_rank, plan.micro_batch))
    return batches


def replaced_indices(batch: dict) -> Iterator[int]:
    """Sample indices whose own video was broken."""
    return _flagged(batch, "replaced", "index")


def fallback_sources(batch: dict) -> Iterator[int]:
    """Indices of the videos the fallback reader read (bench.data.robust.ReaderFallbacks)."""
    return _flagged(batch, "fallback", "source_index")


def _flagged(batch: dict, flag: str, key: str) -> Iterator[int]:
    flags = batch.get(flag)
    if flags is None:
        return iter(())
    return (int(i) for i, f in zip(batch[key], flags) if bool(f))
