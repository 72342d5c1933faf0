"""The held-out split that tuning trials are scored on: a fixed part of the *training* list.

Hyperparameters chosen on the validation set would make its intervals optimistic, so a tuning trial
trains on the training list minus a held-out part and is scored on that part. The part is chosen by
video id (``DatasetIndex.video_ids``: the same names on every copy of the dataset) and stratified by
label: ``round(fraction * N)`` videos (at least one) are held out, each class's share
``fraction * N_class`` rounded by largest remainder (ties to the lower label), and within a class
the videos whose sha256 of ``RULE:id`` ranks first. So it is the same for every method, every seed
and every machine, does not depend on the order of the list, and changes only when the list does.
Unstratified, a tenth of the synthetic tasks' 640 training videos held 3 to 10 of a class's 64;
stratified, every class gives 6 or 7.
"""
from __future__ import annotations

import dataclasses
import hashlib
import math
from dataclasses import dataclass

from .listfile import DatasetIndex

RULE = "sha256-rank-stratified-v1"  # part of a trial's identity: a new rule is a new split


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

    def heldout_positions(self, video_ids: list[str], labels: list[int]) -> set[int]:
        """Positions in the list of the held-out videos."""
        count = self.count(len(video_ids))
        if count >= len(video_ids):
            raise HoldoutError(f"holding out {count} of {len(video_ids)} training videos leaves none to "
                               "train on; lower the held-out fraction")
        by_class: dict[int, list[int]] = {}
        for i, label in enumerate(labels):
            by_class.setdefault(label, []).append(i)
        shares = {label: count * len(members) / len(labels) for label, members in by_class.items()}
        quota = {label: math.floor(share) for label, share in shares.items()}
        for label in sorted(shares, key=lambda c: (quota[c] - shares[c], c))[:count - sum(quota.values())]:
            quota[label] += 1
        held = set()
        for label, members in by_class.items():
            held.update(sorted(members, key=lambda i: (self._rank(video_ids[i]), i))[:quota[label]])
        return held

    def _rank(self, video_id: str) -> bytes:
        return hashlib.sha256(f"{self.rule}:{video_id}".encode()).digest()

    def split(self, index: DatasetIndex) -> tuple[DatasetIndex, DatasetIndex]:
        """(the rest, the held-out part) of a training list, each in the list's order."""
        ids = index.video_ids()
        held = self.heldout_positions(ids, [e.label for e in index.entries])
        flags = [i in held for i in range(len(ids))]
        return _subset(index, ids, [not f for f in flags]), _subset(index, ids, flags)


def _subset(index: DatasetIndex, ids: list[str], keep: list[bool]) -> DatasetIndex:
    entries = [e for e, k in zip(index.entries, keep) if k]
    paths = {e.path for e in entries}
    return dataclasses.replace(index, entries=entries, missing=[p for p in index.missing if p in paths],
                               ids=[i for i, k in zip(ids, keep) if k])
