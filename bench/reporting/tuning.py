"""The tuning sweeps beside a report: read from RESULTS/tuning, and what the tables say about them.

A configuration row says whether it is tuned (the point its sweep chose), at its declared value
while the sweep chose another, another point of a sweep, or not tuned at all. A sweep whose choice
lies more than one grid step from the declared value, at the grid's edge, or with diverged trials
gets a note under its table.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from bench.reporting.summary import ReportError
from bench.store.records import load_records, runs_dir, tuning_dir
from bench.tuning.select import PointScore, SelectionError, Sweep, sweeps

Group = tuple[str, str, str]


def load_sweeps(results_dir: Path | str) -> list[Sweep]:
    """The sweeps of the trials in RESULTS/tuning (none when there is no such folder)."""
    folder = tuning_dir(results_dir)
    if not runs_dir(folder).is_dir():
        return []
    try:
        return sweeps(load_records(folder, trials=True))
    except SelectionError as err:
        raise ReportError(f"{folder}: {err}") from None


def group_of(sweep: Sweep) -> Group:
    return sweep.key[:3]


def value_text(value: float | int) -> str:
    return f"{value:g}"


def point_text(point: PointScore) -> str:
    """``lr 0.032`` (``lr 0.032, wd 0.001`` for a joint sweep)."""
    return ", ".join(f"{p.knob} {value_text(p.value)}" for p in point.point)


def _steps(sweep: Sweep) -> str:
    if sweep.chosen.declared:
        return "the declared value"
    far = sweep.steps_apart
    return (f"declared {point_text(sweep.declared)}, {far} grid step{'s' if far > 1 else ''}"
            + (": more than one" if far > 1 else ""))


def status(label: str, group_sweeps: Sequence[Sweep]) -> str:
    """What the table says of the configuration ``label`` (a method label) in its group."""
    said = []
    for sweep in group_sweeps:
        if label == sweep.chosen.label:
            said.append(f"tuned: {point_text(sweep.chosen)} ({_steps(sweep)})")
        elif label == sweep.declared.label:
            said.append(f"declared: {point_text(sweep.declared)}; tuning chose {point_text(sweep.chosen)}")
        elif any(label == p.label for p in sweep.points):
            said.append("a grid point of the sweep, not chosen")
    return "; ".join(said) or "not tuned"


def notes(sweep: Sweep) -> list[str]:
    """What a reader of the group's table must know about this sweep."""
    name, out = sweep.declared.label, []
    if sweep.steps_apart > 1:
        out.append(f"{name}: tuning chose {point_text(sweep.chosen)}, {sweep.steps_apart} grid steps from the "
                   f"declared {point_text(sweep.declared)}: the declared value is not confirmed")
    if sweep.at_edge:
        out.append(f"{name}: the chosen {', '.join(sweep.at_edge)} is at the grid's edge; a better value may lie "
                   "beyond it")
    for point in sweep.points:
        if point.diverged:
            out.append(f"{name}: {point_text(point)} diverged (seed{'s' if len(point.diverged) > 1 else ''} "
                       f"{', '.join(map(str, point.diverged))}), scored as no video right")
    return out


def point_cell(point: PointScore, sweep: Sweep) -> str:
    """One grid point in a sweep table: its value and mean held-out top-1, the chosen one in bold."""
    text = f"{point_text(point)}: {point.mean:.1f}" + (" (declared)" if point.declared else "")
    return f"**{text}**" if point is sweep.chosen else text
