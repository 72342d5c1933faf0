"""How a run executes (devices, micro-batch, workers, threads): never what it computes."""
from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Execution:
    """How a run executes; never what it computes (up to float summation order across devices)."""

    device: str = "auto"  # "auto" | "cpu" | "cuda"
    batch_per_device: int | None = None  # micro-batch; None: global batch / world size (no accumulation)
    num_workers: int = 0
    threads: int | None = None  # torch CPU threads in this process; None: the SLURM job's cpus_per_task
    progress: bool = True
    keep_checkpoint: bool = False  # a finished run's checkpoint is deleted once its record is written
    log_every: int | None = None  # optimizer steps per training-curve point (None: about 50 per run)
    evaluations: int = 4  # evaluations spread over the epochs for the top-1 curve, the final one included
    tensorboard_dir: str | None = None  # also write TensorBoard event files under <dir>/<run name>/

    def torch_threads(self) -> int | None:
        """The thread count to set: the asked one, else inside a SLURM job its ``--cpus-per-task`` (torch
        would otherwise take every core of the node and oversubscribe it), else torch's default."""
        if self.threads:
            return self.threads
        cpus = os.environ.get("SLURM_CPUS_PER_TASK", "")
        return int(cpus) if cpus.isdigit() and int(cpus) > 0 else None
    # Finish clips on the device (bench.data.gpu_transforms: same clips, workers only decode and draw);
    # None: on CUDA for real datasets, off elsewhere (the synthetic suite's clips are 32 px).
    device_transforms: bool | None = None

    def transforms_on_device(self, device, dataset: str) -> bool:
        if self.device_transforms is not None:
            return self.device_transforms
        from bench.data.synthetic import TASKS
        return device.type == "cuda" and dataset not in TASKS
