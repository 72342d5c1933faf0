"""The tables ``bench.run`` prints: the summary at the end, and a tuning protocol's selection."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

from bench.config import RunConfig


def print_summary(results_dir: Path, runs: Sequence[RunConfig]) -> None:
    """Mean ± std of top-1/top-5 per (dataset, method) over the runs of this invocation, and a
    warning for runs that waited for their data (``bench.reporting.data_bound``)."""
    from tabulate import tabulate

    from bench.reporting.data_bound import data_bound_notes
    from bench.reporting.summary import summarize
    from bench.store.records import find_record, load_record
    records = [load_record(p) for p in (find_record(results_dir, cfg.hash()) for cfg in runs) if p]
    if not records:
        return
    rows = []
    for s in summarize(records, results_dir):
        rows.append((s.dataset, s.method, len(s.seeds), _mean_std(s.top1), _mean_std(s.top5),
                     f"{s.params_trainable:,}", f"{s.gflops_per_view:.3g}"))
    print("\n" + tabulate(rows, headers=("dataset", "method", "seeds", "top-1 %", "top-5 %", "trainable",
                                         "GFLOPs/view")))
    print(f"\nfull tables and plots: python -m bench.report --results {results_dir}")
    for note in data_bound_notes(records):  # last, where it is seen
        print("\n" + note)


def print_selection(sweeps: Sequence) -> None:
    """Each sweep's held-out top-1 per grid point and its choice (``bench.tuning.select.Sweep``)."""
    from tabulate import tabulate

    from bench.reporting.tuning import notes, point_cell, point_text
    rows = [(s.key[0], s.declared.label, " · ".join(point_cell(p, s).replace("**", "*") for p in s.points),
             point_text(s.chosen)) for s in sweeps]
    print("\n" + tabulate(rows, headers=("dataset", "configuration", "held-out top-1 % per grid point (*chosen)",
                                         "chosen")))
    for line in (n for s in sweeps for n in notes(s)):
        print(f"note: {line}")


def _mean_std(values: Sequence[float]) -> str:
    mean = sum(values) / len(values)
    if len(values) < 2:
        return f"{mean:.1f}"
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
    return f"{mean:.1f} ± {std:.1f}"
