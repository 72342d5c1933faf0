"""Training curves as a run trains: loss, learning rate and throughput per logging interval, top-1
per evaluation.

The points live in the run's progress, so a resumed run keeps the history of its earlier attempts,
and end up in its record (``bench.store.curves`` has the format). With ``--tensorboard`` they are
also written as TensorBoard scalars the moment they are measured.
"""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import torch

from bench.engine.distributed import DistContext, all_reduce
from bench.store.curves import append_point

DEFAULT_POINTS = 50  # per run, when --log-every is not given: enough for a curve, small enough for a record


TENSORBOARD_HINT = ("--tensorboard needs the tensorboard package, which is optional: "
                    "pip install 'petl-video-bench[tensorboard]' (or pip install tensorboard)")


class TensorBoardMissing(RuntimeError):
    """TensorBoard logging was asked for but the optional package is not installed."""

    def __init__(self) -> None:
        super().__init__(TENSORBOARD_HINT)


def require_tensorboard() -> None:
    """Fail early, with the fix, when TensorBoard logging cannot work here."""
    try:
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401
    except ImportError as err:
        raise TensorBoardMissing() from err


def tensorboard_writer(log_dir: Path, purge_step: int):
    """An event-file writer; ``purge_step`` drops the points a killed attempt wrote after its checkpoint."""
    require_tensorboard()
    from torch.utils.tensorboard import SummaryWriter
    return SummaryWriter(log_dir=str(log_dir), purge_step=purge_step or None)


def log_interval(steps_per_epoch: int, epochs: int, requested: int | None) -> int:
    """Optimizer steps per logging interval: as requested, else about DEFAULT_POINTS over the run."""
    if requested is not None:
        if requested < 1:
            raise ValueError(f"log interval must be >= 1 step, got {requested}")
        return requested
    return max(1, math.ceil(steps_per_epoch / math.ceil(DEFAULT_POINTS / epochs)))


def evaluation_epochs(epochs: int, evaluations: int) -> set[int]:
    """The epochs after which a run is evaluated: ``evaluations`` of them spread evenly, the last always."""
    if evaluations < 1:
        raise ValueError(f"a run needs at least its final evaluation, got evaluations={evaluations}")
    return {math.ceil(k * epochs / evaluations) for k in range(1, evaluations + 1)}


class CurveLogger:
    """Collects the points of one run; every rank calls it at every step (the loss is reduced over ranks).

    ``pending`` is the logging interval in progress (its loss sum, steps and lr), kept in the run's
    progress so that a run stopped mid-interval and resumed logs the same loss points as one that was
    not. Throughput is timed over the steps this attempt ran of the interval.
    """

    def __init__(self, curves: dict[str, Any], pending: dict[str, float], global_batch: int, ctx: DistContext,
                 writer=None):
        self.curves = curves
        self.pending = pending
        self.global_batch = global_batch
        self.ctx = ctx
        self.writer = writer
        self._epoch_first = self._epoch_last = 0
        self._timed_steps, self._since = 0, time.perf_counter()
        if not pending:
            self._reset()

    def _reset(self) -> None:
        self.pending.update(loss=0.0, steps=0, lr=0.0)
        self._timed_steps, self._since = 0, time.perf_counter()

    def start_epoch(self, epoch: int) -> None:
        spe = self.curves["steps_per_epoch"]
        self._epoch_first, self._epoch_last = epoch * spe, (epoch + 1) * spe
        self._timed_steps, self._since = 0, time.perf_counter()

    def step(self, step: int, loss: float, lr: float) -> None:
        """After optimizer step ``step`` (counted from 1), which used ``lr`` and had this rank's ``loss``."""
        self.pending["loss"] += loss
        self.pending["steps"] += 1
        self.pending["lr"] = lr
        self._timed_steps += 1
        if (step - self._epoch_first) % self.curves["log_every"] == 0 or step == self._epoch_last:
            self._flush(step)

    def _flush(self, step: int) -> None:
        total = all_reduce(torch.tensor([self.pending["loss"]], dtype=torch.float64), self.ctx).item()
        elapsed = max(time.perf_counter() - self._since, 1e-9)
        point = {"step": step, "loss": total / (self.pending["steps"] * self.ctx.world_size), "lr": self.pending["lr"],
                 "clips_per_s": self._timed_steps * self.global_batch / elapsed}
        append_point(self.curves, "train", **point)
        self._write("train", step, point)
        self._reset()

    def evaluation(self, step: int, metrics: dict[str, Any]) -> None:
        point = {"step": step, "top1": metrics["top1"], "top5": metrics["top5"]}
        append_point(self.curves, "eval", **point)
        self._write("eval", step, point)

    def _write(self, part: str, step: int, point: dict[str, float]) -> None:
        if self.writer is None:
            return
        for name, value in point.items():
            if name != "step":
                self.writer.add_scalar(f"{part}/{name}", value, step)
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
