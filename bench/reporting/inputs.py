"""What a report is drawn from: the records of a results directory, checked, summarised and analysed.

``bench.report`` writes its tables and plots from a ``Report`` and ``bench.check`` regenerates the
tables from one, so both always see the same numbers.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.cache import cache_root
from bench.reporting.costs import (
    CostAxis,
    Costs,
    PerfRecord,
    configuration_costs,
    index_perf_records,
    load_perf_records,
    pareto_front,
)
from bench.reporting.layout import DEFAULT_PERF, DEFAULT_REFERENCE
from bench.reporting.reference import ReportedRow, load_reference
from bench.reporting.summary import MethodSummary, group_summaries, summarize
from bench.reporting.tuning import group_of, load_sweeps
from bench.reporting.uncertainty import DEFAULT_REFERENCE_METHOD, Group, GroupAnalysis, analyse
from bench.store.records import RunRecord, load_records, runs_dir
from bench.tuning.select import Sweep


@dataclass(frozen=True)
class Report:
    """A pure function of the records, their per-video outputs and the published numbers."""

    summaries: list[MethodSummary]
    reported: list[ReportedRow]
    analysis: dict[Group, GroupAnalysis]
    records: dict[str, RunRecord]  # by file name
    sweeps: list[Sweep] = field(default_factory=list)  # the tuning trials of RESULTS/tuning, per configuration
    costs: dict[tuple[str, str, str, str], Costs] = field(default_factory=dict)  # by (*group, method label)
    perf: list[PerfRecord] = field(default_factory=list)  # the H200 step records, by label

    def cost(self, summary: MethodSummary) -> Costs:
        return self.costs[(*summary.group, summary.method)]

    def pareto(self, group: Group, axis: CostAxis) -> list[str]:
        """The group's configurations on the Pareto front of mean top-1 against ``axis``, by cost;
        those without that cost (no H200 record) take no part."""
        points = [(s.method, value, s.top1_mean) for s in group_summaries(self.summaries)[group]
                  if (value := axis.of(self.cost(s))) is not None]
        return pareto_front(points)

    def curves(self, summary: MethodSummary) -> list[tuple[int, dict[str, Any]]]:
        """(seed, curves) of the configuration's seeds that recorded training curves."""
        return [(seed, self.records[name].curves) for seed, name in zip(summary.seeds, summary.files)
                if self.records[name].curves is not None]

    def groups_with_curves(self) -> list[Group]:
        return [group for group, rows in group_summaries(self.summaries).items()
                if any(self.curves(s) for s in rows)]

    def sweeps_in(self, group: Group) -> list[Sweep]:
        return [s for s in self.sweeps if group_of(s) == group]

    def groups_with_sweeps(self) -> list[Group]:
        return sorted({group_of(s) for s in self.sweeps})

    def groups_with_paired_tests(self) -> list[Group]:
        return [group for group, a in self.analysis.items() if any(row.result for row in a.paired)]


def build_report(results_dir: Path | str, reference: Path | str = DEFAULT_REFERENCE,
                 reference_method: str = DEFAULT_REFERENCE_METHOD, perf: Path | str = DEFAULT_PERF) -> Report:
    """Read and check the records (and their per-video outputs) under ``results_dir``, the tuning
    trials under ``results_dir/tuning`` and the H200 step records under ``perf``. Where the reference
    method has a tuned and a declared configuration side by side, the tuned one (its sweep's choice)
    is the reference."""
    records = load_records(results_dir)
    summaries = summarize(records, results_dir)
    by_name = {r.file_name: r for r in records}
    sweeps = load_sweeps(results_dir)
    chosen: dict[Group, set[str]] = {}
    for sweep in sweeps:
        chosen.setdefault(group_of(sweep), set()).add(sweep.chosen.label)
    perf_records = load_perf_records(perf)
    cases = index_perf_records(perf_records, perf)
    costs = {(*s.group, s.method): configuration_costs(by_name[s.files[0]], str(runs_dir(results_dir) / s.files[0]),
                                                       cases, cache_root() / "counts") for s in summaries}
    return Report(summaries=summaries, reported=load_reference(reference),
                  analysis=analyse(summaries, by_name, results_dir, reference_method, preferred=chosen),
                  records=by_name, sweeps=sweeps, costs=costs, perf=perf_records)
