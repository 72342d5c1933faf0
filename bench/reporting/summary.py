"""Aggregation: the seeds of one configuration summarised, after checking they belong together."""
from __future__ import annotations

import re
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from bench.store.records import RecordError, RunRecord, runs_dir


class ReportError(ValueError):
    """Input that the report cannot summarise honestly: inconsistent runs, a bad reference file."""


def _seed_std(values: list[float]) -> float | None:
    """Sample standard deviation over seeds; undefined (None) for a single seed."""
    return statistics.stdev(values) if len(values) > 1 else None


@dataclass(frozen=True)
class MethodSummary:
    """All seeds of one (dataset, backbone, recipe, method) configuration."""

    dataset: str
    backbone: str
    recipe: str
    method: str  # method label: the method id plus its options, see method_label()
    seeds: tuple[int, ...]
    top1: tuple[float, ...]
    top5: tuple[float, ...]
    params_trainable: int
    params_total: int
    params_backbone: int | None
    gflops_per_view: float
    views: int
    throughput_clips_per_s: float | None  # mean over the seeds that measured it
    peak_memory_bytes: int | None  # largest over the seeds that measured it
    files: tuple[str, ...] = ()  # the seeds' record file names, in seed order
    val_videos: tuple[int, ...] = ()  # the validation set sizes the seeds recorded (one value normally)

    @property
    def group(self) -> tuple[str, str, str]:
        return (self.dataset, self.backbone, self.recipe)

    @property
    def n(self) -> int:
        return len(self.seeds)

    @property
    def top1_mean(self) -> float:
        return statistics.fmean(self.top1)

    @property
    def top1_std(self) -> float | None:
        return _seed_std(self.top1)

    @property
    def top5_mean(self) -> float:
        return statistics.fmean(self.top5)

    @property
    def top5_std(self) -> float | None:
        return _seed_std(self.top5)

    @property
    def method_id(self) -> str:
        """The method without its options or tuned values: ``st_adapter[width=32](base_lr=0.032)`` ->
        ``st_adapter``."""
        return re.split(r"[\[(]", self.method, maxsplit=1)[0]

    @property
    def params_percent(self) -> float | None:
        return 100.0 * self.params_trainable / self.params_backbone if self.params_backbone else None


def method_label(record: RunRecord, where: Path | str) -> str:
    """The method id, plus its options when it has any, so that two presets get two rows, plus the
    recipe values a tuning protocol set away from the method's declared ones (``(base_lr=0.032)``),
    so that a tuned configuration is a row, a baseline and a gate entry of its own."""
    return record.method + _bracketed(record, where, "method_options", "[]") + _bracketed(record, where, "tuned", "()")


def _bracketed(record: RunRecord, where: Path | str, field: str, brackets: str) -> str:
    values = record.config.get(field) or {}
    if not isinstance(values, dict):
        raise RecordError(where, f"config.{field}", f"expected an object, got {values!r}")
    if not values:
        return ""
    return brackets[0] + ",".join(f"{k}={values[k]}" for k in sorted(values)) + brackets[1]


def backbone_sizes(records: Iterable[RunRecord]) -> dict[str, int]:
    """Parameter count of each frozen image backbone, read off the runs on it.

    A run's frozen count (total - trainable) is at most the backbone's size and equals it for every
    method that freezes the whole backbone (linear probe, adapters, prompts), so the largest frozen
    count among a backbone's runs is its size whenever any such method ran on it.
    """
    sizes: dict[str, int] = {}
    for r in records:
        sizes[r.backbone] = max(sizes.get(r.backbone, 0), r.params_total - r.params_trainable)
    return sizes


def summarize(records: Sequence[RunRecord], results_dir: Path | str = ".") -> list[MethodSummary]:
    """One summary per configuration, sorted by (dataset, backbone, recipe, trainable params, method).

    Seeds of one configuration must agree on everything that does not depend on the seed
    (parameter counts, FLOPs, views) and a seed may appear once: anything else means records of
    different experiments were mixed, and averaging them would be wrong. `results_dir` only
    names the files in error messages.
    """
    sizes = backbone_sizes(records)
    by_key: dict[tuple[str, str, str, str], list[RunRecord]] = {}
    for r in records:
        key = (r.dataset, r.backbone, r.recipe, method_label(r, runs_dir(results_dir) / r.file_name))
        by_key.setdefault(key, []).append(r)

    summaries = []
    for (dataset, backbone, recipe, method), runs in by_key.items():
        runs = sorted(runs, key=lambda r: (r.seed, r.file_name))
        _check_consistent(runs, runs_dir(results_dir))
        throughputs = [r.throughput_clips_per_s for r in runs if r.throughput_clips_per_s > 0]
        memories = [r.peak_memory_bytes for r in runs if r.peak_memory_bytes > 0]
        first = runs[0]
        summaries.append(MethodSummary(
            dataset=dataset, backbone=backbone, recipe=recipe, method=method,
            seeds=tuple(r.seed for r in runs),
            top1=tuple(float(r.top1) for r in runs), top5=tuple(float(r.top5) for r in runs),
            params_trainable=first.params_trainable, params_total=first.params_total,
            params_backbone=sizes[backbone] or None,
            gflops_per_view=float(first.gflops_per_view), views=first.views,
            throughput_clips_per_s=statistics.fmean(throughputs) if throughputs else None,
            peak_memory_bytes=max(memories) if memories else None,
            files=tuple(r.file_name for r in runs),
            val_videos=tuple(sorted({r.extra["val_videos"] for r in runs if isinstance(r.extra.get("val_videos"), int)})),
        ))
    return sorted(summaries, key=lambda s: (*s.group, s.params_trainable, s.method))


def _check_consistent(runs: list[RunRecord], folder: Path) -> None:
    """`runs` sorted by seed; raise if a seed repeats or the seeds disagree on a seed-free field."""
    def where(record: RunRecord) -> Path:
        return folder / record.file_name

    first = runs[0]
    for previous, r in zip(runs, runs[1:]):
        if r.seed == previous.seed:
            raise ReportError(
                f"{where(previous)} and {where(r)} are both seed {r.seed} of the same configuration "
                f"({r.dataset}, {r.backbone}, {r.recipe}, {r.method}); remove the stale one or keep "
                "different experiments in different --results directories")
        for name in ("params_trainable", "params_total", "gflops_per_view", "views"):
            if getattr(r, name) != getattr(first, name):
                raise ReportError(
                    f"{where(r)}: field '{name}' is {getattr(r, name)!r} but {where(first)} of the "
                    f"same configuration has {getattr(first, name)!r}; seeds of one configuration "
                    "must agree on it (re-run the stale one with --force)")


def group_summaries(summaries: Sequence[MethodSummary]) -> dict[tuple[str, str, str], list[MethodSummary]]:
    groups: dict[tuple[str, str, str], list[MethodSummary]] = {}
    for s in summaries:
        groups.setdefault(s.group, []).append(s)
    return groups
