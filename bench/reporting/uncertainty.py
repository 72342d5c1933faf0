"""The report's intervals and paired tests, from the records and their per-video outputs.

Per configuration: a 95% interval of top-1 over seeds (Student t) and over videos (bootstrap of the
validation set, seeds pooled). Per method of a (dataset, backbone, recipe) group against the
reference method: the paired difference in top-1 with its 95% interval and p-value (paired bootstrap
over videos and seeds; ``bench.reporting.stats`` has the maths and why).

Two runs are compared video by video only when they were evaluated on the same validation list
(equal list hashes: the same videos, order and labels); otherwise, or when a record has no per-video
outputs (schema 1), the row says why no test was made instead of making a wrong one.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Collection, Mapping, Sequence

import numpy as np

from bench.reporting.stats import (
    Interval,
    PairedDifference,
    paired_bootstrap,
    resampled_hits,
    seed_interval,
    video_interval,
)
from bench.reporting.summary import MethodSummary, ReportError, group_summaries
from bench.store.predictions import Predictions, load_predictions
from bench.store.records import RunRecord, runs_dir

DEFAULT_REFERENCE_METHOD = "st_adapter"


NO_OUTPUTS = "no per-video outputs"


Group = tuple[str, str, str]


@dataclass(frozen=True, eq=False)
class Outcomes:
    """Top-1 right or wrong per video, for the seeds of one configuration that kept per-video outputs."""

    seeds: tuple[int, ...]
    correct: np.ndarray  # (seeds, videos) bool
    val_list: str  # the validation-list hash every one of these seeds was evaluated on

    @property
    def videos(self) -> int:
        return self.correct.shape[1]


@dataclass(frozen=True)
class Intervals:
    """95% intervals of one configuration's top-1 (%)."""

    seeds: Interval | None  # Student t over the seeds; None with one seed
    videos: Interval | None  # bootstrap over the validation videos, seeds pooled; None without outputs
    video_seeds: int  # how many seeds the video interval pools
    videos_n: int | None  # validation videos behind the video interval


@dataclass(frozen=True)
class PairedRow:
    """One method against the reference: the test, or why there is none."""

    method: str
    result: PairedDifference | None
    reason: str | None = None


@dataclass(frozen=True)
class GroupAnalysis:
    intervals: dict[str, Intervals]  # by method label
    reference: str | None  # the reference configuration's method label in this group
    paired: list[PairedRow] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def seed_predictions(summary: MethodSummary, records: Mapping[str, RunRecord],
                     results_dir: Path | str) -> dict[int, Predictions]:
    """The per-video outputs of the configuration's seeds that have them, by seed.

    Seeds of one configuration evaluated on different validation lists are records of different
    experiments mixed in one folder: an error naming both files, like any other disagreement.
    """
    found: dict[int, Predictions] = {}
    first: RunRecord | None = None
    for seed, name in zip(summary.seeds, summary.files):
        record = records[name]
        predictions = load_predictions(results_dir, record)
        if predictions is None:
            continue
        if first is None:
            first = record
        elif record.predictions["val_list_sha256"] != first.predictions["val_list_sha256"]:
            folder = runs_dir(results_dir)
            raise ReportError(
                f"{folder / record.file_name} and {folder / first.file_name} are seeds of one configuration "
                f"evaluated on different validation lists ({record.predictions['val_list_sha256'][:12]} vs "
                f"{first.predictions['val_list_sha256'][:12]}); keep each validation copy's runs in its own "
                "--results directory and compare them with `python -m bench.compare`")
        found[seed] = predictions
    return found


def load_outcomes(summary: MethodSummary, records: Mapping[str, RunRecord], results_dir: Path | str) -> Outcomes | None:
    """The configuration's per-video top-1, over the seeds that have it; None if none has."""
    found = seed_predictions(summary, records, results_dir)
    if not found:
        return None
    first = next(iter(found.values()))
    evaluated = np.logical_and.reduce([p.evaluated for p in found.values()])  # broken videos are skipped
    return Outcomes(seeds=tuple(found), correct=np.stack([p.top1_correct[evaluated] for p in found.values()]),
                    val_list=first.list_sha256())


def resolve_reference(rows: Sequence[MethodSummary], reference_method: str,
                      preferred: Collection[str] = ()) -> tuple[str | None, str | None]:
    """The reference's method label in a group, or None with the reason: an exact label wins, else
    the one configuration of that method id, else the one of them in ``preferred`` (a tuned
    configuration beside its declared one)."""
    labels = [s.method for s in rows]
    if reference_method in labels:
        return reference_method, None
    matches = [s.method for s in rows if s.method_id == reference_method]
    if len(matches) > 1 and len([m for m in matches if m in preferred]) == 1:
        matches = [m for m in matches if m in preferred]
    if len(matches) == 1:
        return matches[0], None
    if not matches:
        return None, f"the reference method {reference_method} has no runs here: no paired differences"
    return None, (f"the reference method {reference_method} is ambiguous here ({', '.join(matches)}): pass "
                  "--reference-method with one of these labels")


def analyse(summaries: Sequence[MethodSummary], records: Mapping[str, RunRecord], results_dir: Path | str,
            reference_method: str = DEFAULT_REFERENCE_METHOD,
            preferred: Mapping[Group, Collection[str]] | None = None) -> dict[Group, GroupAnalysis]:
    """Intervals and paired tests of every group, in the summaries' order (``preferred``: each
    group's tuning choices, see ``resolve_reference``; per group, because one method's choice is
    its declared label in one group and a tuned one in another)."""
    analysis = {}
    for group, rows in group_summaries(summaries).items():
        outcomes = {s.method: load_outcomes(s, records, results_dir) for s in rows}
        hits = _hits_by_configuration(outcomes)
        intervals = {s.method: _intervals(s, outcomes[s.method], hits.get(s.method)) for s in rows}
        reference, note = resolve_reference(rows, reference_method, (preferred or {}).get(group, ()))
        notes = [note] if note else []
        without = [s.method for s in rows if outcomes[s.method] is None]
        if without:
            notes.append(f"{NO_OUTPUTS} (records written before schema 2): {', '.join(without)}; their intervals "
                         "over videos and paired differences are not computed")
        paired = [] if reference is None else [
            _paired_row(s.method, reference, outcomes, hits) for s in rows if s.method != reference]
        analysis[group] = GroupAnalysis(intervals=intervals, reference=reference, paired=paired, notes=notes)
    return analysis


def _hits_by_configuration(outcomes: Mapping[str, Outcomes | None]) -> dict[str, np.ndarray]:
    """Bootstrap hits (seeds x replicates) of every configuration, one resampling per validation list
    so that configurations on the same list are paired by video."""
    by_list: dict[str, list[str]] = {}
    for method, o in outcomes.items():
        if o is not None:
            by_list.setdefault(o.val_list, []).append(method)
    hits = {}
    for methods in by_list.values():
        stacked = resampled_hits(np.concatenate([outcomes[m].correct for m in methods]))
        start = 0
        for m in methods:
            hits[m] = stacked[start:start + len(outcomes[m].seeds)]
            start += len(outcomes[m].seeds)
    return hits


def _intervals(summary: MethodSummary, outcomes: Outcomes | None, hits: np.ndarray | None) -> Intervals:
    if outcomes is None:
        return Intervals(seeds=seed_interval(summary.top1), videos=None, video_seeds=0, videos_n=None)
    return Intervals(seeds=seed_interval(summary.top1), videos=video_interval(hits, outcomes.videos),
                     video_seeds=len(outcomes.seeds), videos_n=outcomes.videos)


def _paired_row(method: str, reference: str, outcomes: Mapping[str, Outcomes | None],
                hits: Mapping[str, np.ndarray]) -> PairedRow:
    mine, theirs = outcomes[method], outcomes[reference]
    if mine is None or theirs is None:
        return PairedRow(method, None, NO_OUTPUTS if mine is None else f"{NO_OUTPUTS} for the reference")
    if mine.val_list != theirs.val_list:
        return PairedRow(method, None, f"different validation lists ({mine.val_list[:8]} vs {theirs.val_list[:8]}): "
                                       "not comparable video by video")
    common = sorted(set(mine.seeds) & set(theirs.seeds))
    if not common:
        return PairedRow(method, None, "no seed in common with the reference")
    a = [mine.seeds.index(s) for s in common]
    b = [theirs.seeds.index(s) for s in common]
    return PairedRow(method, paired_bootstrap(mine.correct[a], theirs.correct[b], hits[method][a], hits[reference][b]))
