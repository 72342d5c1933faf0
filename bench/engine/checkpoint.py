"""Per-run checkpoints: written atomically, read back only by the config they belong to."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from bench.atomic import atomic_write
from bench.engine.feed import FeedTotals

log = logging.getLogger(__name__)

CHECKPOINT_NAME = "checkpoint.pt"


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    atomic_write(path, lambda tmp: torch.save(state, tmp))


def load_checkpoint(path: Path, config_hash: str) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    state = torch.load(path, map_location="cpu", weights_only=False)
    if state.get("config_hash") != config_hash:
        log.warning("ignoring %s: it belongs to config %s, not %s", path, state.get("config_hash"), config_hash)
        return None
    return state


@dataclass
class Progress:
    """Where a run stands, carried by its checkpoint so a resumed run reports whole-run numbers."""

    epoch: int = 0
    train_time_s: float = 0.0
    clips_seen: int = 0
    broken: set = field(default_factory=set)  # ("train" | "val", sample index) of replaced videos
    fallbacks: set = field(default_factory=set)  # ("train" | "val", video index) read by the fallback reader
    attempts: int = 1
    earlier_wall_time_s: float = 0.0
    step_in_epoch: int = 0  # optimizer steps finished in the current epoch (a stop can come mid-epoch)
    epoch_loss_sum: float = 0.0  # this rank's summed step losses of the current epoch
    curves: dict = field(default_factory=dict)  # bench.store.curves format; empty until the run starts
    curve_interval: dict = field(default_factory=dict)  # the training-curve interval in progress (CurveLogger)
    data_wait_s: float = 0.0  # of train_time_s: bench.engine.feed; 0 in checkpoints from before it
    host_wait_s: float = 0.0
    gpu_busy_s: float = 0.0

    def add_feed(self, totals: FeedTotals) -> None:
        """Fold in what ``bench.engine.feed.FeedMeter`` measured."""
        self.data_wait_s += totals.data_wait_s
        self.host_wait_s += totals.host_wait_s
        self.gpu_busy_s += totals.gpu_busy_s

    def finish_epoch(self) -> None:
        self.epoch += 1
        self.step_in_epoch, self.epoch_loss_sum = 0, 0.0
