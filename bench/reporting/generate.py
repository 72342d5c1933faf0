"""From the records of a results directory to its tables and plots."""
from __future__ import annotations

from pathlib import Path

from bench.atomic import atomic_write
from bench.reporting.inputs import build_report
from bench.reporting.layout import DEFAULT_PERF, DEFAULT_REFERENCE, PLOTS_SUBDIR
from bench.reporting.plots import write_plots
from bench.reporting.tables import render_tables
from bench.reporting.uncertainty import DEFAULT_REFERENCE_METHOD


def write_text_files(out_dir: Path, files: dict[str, str]) -> list[Path]:
    """Write atomically so a reader never sees a half-written table."""
    return [atomic_write(out_dir / rel, text) for rel, text in sorted(files.items())]


def generate(results_dir: Path | str, out_dir: Path | str | None = None,
             reference: Path | str = DEFAULT_REFERENCE, plots: bool = True,
             reference_method: str = DEFAULT_REFERENCE_METHOD, perf: Path | str = DEFAULT_PERF) -> list[Path]:
    """Read the records under `results_dir` (and the H200 step records under `perf`), write tables (and
    plots) under `out_dir` (default: the same)."""
    results_dir = Path(results_dir)
    out_dir = Path(out_dir) if out_dir is not None else results_dir
    report = build_report(results_dir, reference, reference_method, perf)
    paths = write_text_files(out_dir, render_tables(report))
    if plots:
        paths += write_plots(report, out_dir / PLOTS_SUBDIR)
    return paths
