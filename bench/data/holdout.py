"""The held-out split that tuning trials are scored on: a fixed part of the *training* list.

Hyperparameters chosen on the validation set would make its intervals optimistic, so a tuning trial
trains on the training list minus a held-out part and is scored on that part. The part is chosen by
video id alone (``DatasetIndex.video_ids``: the same names on every copy of the dataset): the ids
are ranked by the sha256 of ``RULE:id`` and the first ``round(fraction * N)`` (at least one) are held
out. So it is the same for every method, every seed and every machine, does not depend on the order
of the list, and changes only when the list does. It is not stratified by class: on a list of a few
hundred videos the classes' shares in it vary by a few videos.
"""
from __future__ import annotations

import dataclasses
import hashlib
import math
from dataclasses import dataclass

from .listfile import DatasetIndex

RULE = "sha256-rank-v1"  # part of a trial's identity: a new rule is a new split


class HoldoutError(ValueError):
    """A held-out fraction that leaves nothing to train on or nothing to score."""


@dataclass(frozen=True)
class HoldoutSpec:
    """Which part of the training list is held out: ``fraction`` of it, picked by ``RULE``."""

    fraction: float = 0.1
    rule: str = RULE

    def __post_init__(self) -> None:
        if isinstance(self.fraction, bool) or not (isinstance(self.fraction, (int, float))
                                                   and math.isfinite(self.fraction) and 0 < self.fraction <= 0.5):
            raise HoldoutError(f"held-out fraction {self.fraction!r} must be a number in (0, 0.5] "
                               "(about 0.1: a tenth of the training list)")
        if self.rule != RULE:
            raise HoldoutError(f"held-out rule {self.rule!r} is unknown; this code splits by {RULE!r}")

    def count(self, videos: int) -> int:
        """How many of a list of ``videos`` are held out."""
        return max(1, round(self.fraction * videos))

    def heldout_positions(self, video_ids: list[str]) -> set[int]:
        """Positions in the list of the held-out videos."""
        count = self.count(len(video_ids))
        if count >= len(video_ids):
            raise HoldoutError(f"holding out {count} of {len(video_ids)} training videos leaves none to "
                               "train on; lower the held-out fraction")
        rank = sorted(range(len(video_ids)),
                      key=lambda i: (hashlib.sha256(f"{self.rule}:{video_ids[i]}".encode()).digest(), i))
        return set(rank[:count])

    def split(self, index: DatasetIndex) -> tuple[DatasetIndex, DatasetIndex]:
        """(the rest, the held-out part) of a training list, each in the list's order."""
        ids = index.video_ids()
        held = self.heldout_positions(ids)
        flags = [i in held for i in range(len(ids))]
        return _subset(index, ids, [not f for f in flags]), _subset(index, ids, flags)


def _subset(index: DatasetIndex, ids: list[str], keep: list[bool]) -> DatasetIndex:
    entries = [e for e, k in zip(index.entries, keep) if k]
    paths = {e.path for e in entries}
    return dataclasses.replace(index, entries=entries, missing=[p for p in index.missing if p in paths],
                               ids=[i for i, k in zip(ids, keep) if k])
