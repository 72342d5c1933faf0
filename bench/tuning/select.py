"""The selection rule of a tuning sweep, a function of its trial records and nothing else.

Rule: each grid point scores the mean held-out top-1 over the trial seeds, counted as held-out
videos right summed over the seeds (every point has the same seeds and the same held-out videos, so
this orders the points as the mean does, and equal means compare equal exactly). The highest score
wins. A tie goes to the declared value; among tied points without it, to the one fewest grid steps
from it, then to the smaller value. A diverged trial has no video right.

Only trial records enter: their top-1 is measured on the held-out part of the training list, and
``load_records`` refuses a folder of trials with an ordinary run in it, so no validation number can
reach the choice.
"""
from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from typing import Iterable, Sequence

from bench.reporting.summary import method_label
from bench.store.records import RunRecord, is_trial
from bench.tuning.spec import KnobPoint, TrialSpec

# (dataset, backbone, recipe, method, options without the tuned ones, knobs, held-out fraction)
SweepKey = tuple[str, str, str, str, str, tuple[str, ...], float]


class SelectionError(ValueError):
    """Trial records that do not make a complete sweep; the message says what is missing."""


@dataclass(frozen=True)
class PointScore:
    """One grid point of a sweep over its trial seeds."""

    point: tuple[KnobPoint, ...]  # sorted by knob
    label: str  # the configuration this point runs as, once chosen (its method label)
    seeds: tuple[int, ...]
    top1: tuple[float, ...]  # held-out top-1 per seed
    correct: int  # held-out videos right, summed over the seeds
    videos: int  # held-out videos per seed
    diverged: tuple[int, ...]  # the seeds whose training loss became non-finite
    files: tuple[str, ...]

    @property
    def mean(self) -> float:
        return statistics.fmean(self.top1)

    @property
    def declared(self) -> bool:
        return all(p.step == 0 for p in self.point)

    @property
    def distance(self) -> int:
        """Grid steps from the declared point, over every knob."""
        return sum(abs(p.step) for p in self.point)

    def value(self, knob: str) -> float | int:
        return next(p.value for p in self.point if p.knob == knob)


@dataclass(frozen=True)
class Sweep:
    """Every point of one configuration's sweep, with the chosen and the declared point."""

    key: SweepKey
    points: tuple[PointScore, ...]  # in grid order
    chosen: PointScore
    declared: PointScore

    @property
    def knobs(self) -> tuple[str, ...]:
        return self.key[5]

    @property
    def steps_apart(self) -> int:
        """The largest number of grid steps between the chosen and the declared value of a knob."""
        return max(abs(p.step) for p in self.chosen.point)

    @property
    def at_edge(self) -> list[str]:
        """The knobs whose chosen value is the grid's first or last: the best may lie beyond."""
        return [p.knob for p in self.chosen.point
                if p.step != 0 and abs(p.step) == max(abs(q.step) for s in self.points for q in s.point
                                                       if q.knob == p.knob)]


def trial_of(record: RunRecord) -> TrialSpec:
    if not is_trial(record):
        raise SelectionError(f"{record.file_name} is not a tuning trial: selection reads trial records only")
    return TrialSpec.from_dict(record.config["trial"])


def sweep_key(record: RunRecord) -> SweepKey:
    """What the trials of one sweep share: the configuration without the tuned knobs."""
    trial = trial_of(record)
    knobs = tuple(p.knob for p in trial.point)
    options = {k: v for k, v in (record.config.get("method_options") or {}).items() if k not in knobs}
    return (record.dataset, record.backbone, record.recipe, record.method, json.dumps(options, sort_keys=True),
            knobs, trial.holdout.fraction)


def score_point(records: Sequence[RunRecord]) -> PointScore:
    """The trials of one grid point (one per seed)."""
    records = sorted(records, key=lambda r: r.seed)
    seeds = tuple(r.seed for r in records)
    if len(set(seeds)) != len(seeds):
        raise SelectionError(f"two trials of one grid point share a seed: {[r.file_name for r in records]}")
    videos = {int(r.extra["val_videos"]) for r in records}
    if len(videos) != 1:
        raise SelectionError(f"trials of one grid point were scored on different held-out sizes {sorted(videos)}: "
                             f"{[r.file_name for r in records]}")
    n = videos.pop()
    return PointScore(point=tuple(sorted(trial_of(records[0]).point, key=lambda p: p.knob)),
                      label=method_label(records[0], records[0].file_name), seeds=seeds,
                      top1=tuple(r.top1 for r in records), correct=sum(round(r.top1 * n / 100) for r in records),
                      videos=n, diverged=tuple(r.seed for r in records if "diverged" in r.extra),
                      files=tuple(r.file_name for r in records))


def choose(points: Sequence[PointScore]) -> PointScore:
    """The rule above, over points that share seeds and held-out videos."""
    if len({(p.seeds, p.videos) for p in points}) != 1:
        raise SelectionError("the grid points do not share their trial seeds and held-out videos: "
                             + "; ".join(f"{p.label}: seeds {list(p.seeds)}, {p.videos} videos" for p in points)
                             + "; run the missing trials (bench.run --tune) before selecting")
    return max(points, key=lambda p: (p.correct, p.declared, -p.distance, tuple(-q.step for q in p.point)))


def sweep_of(key: SweepKey, records: Sequence[RunRecord]) -> Sweep:
    """One sweep from its trial records (every point and seed)."""
    held_out = {json.dumps((r.config.get("data") or {}).get("val_list_sha256")) for r in records}
    if len(held_out) != 1:
        raise SelectionError(f"the trials of {key[3]} on {key[0]} were scored on {len(held_out)} different held-out "
                             "lists; they cannot be compared")
    by_point: dict[tuple, list[RunRecord]] = {}
    for r in records:
        by_point.setdefault(tuple(sorted((p.knob, p.step) for p in trial_of(r).point)), []).append(r)
    points = tuple(score_point(by_point[k]) for k in sorted(by_point))
    declared = [p for p in points if p.declared]
    if not declared:
        raise SelectionError(f"the sweep of {key[3]} on {key[0]} has no trial at the declared value")
    return Sweep(key=key, points=points, chosen=choose(points), declared=declared[0])


def sweeps(records: Iterable[RunRecord]) -> list[Sweep]:
    """Every sweep among a folder's trial records, sorted by key."""
    groups: dict[SweepKey, list[RunRecord]] = {}
    for r in records:
        groups.setdefault(sweep_key(r), []).append(r)
    return [sweep_of(key, groups[key]) for key in sorted(groups)]
