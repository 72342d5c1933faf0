"""How a run executes (devices, micro-batch, workers, threads): never what it computes."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Execution:
    """How a run executes; never what it computes (up to float summation order across devices)."""

    device: str = "auto"  # "auto" | "cpu" | "cuda"
    batch_per_device: int | None = None  # micro-batch; None: global batch / world size (no accumulation)
    num_workers: int = 0
    threads: int | None = None  # torch CPU threads in this process
    progress: bool = True
    keep_checkpoint: bool = False  # a finished run's checkpoint is deleted once its record is written
