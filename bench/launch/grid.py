"""A planned set of runs into a results folder: those with no record launched, the rest skipped.

``bench.run`` launches its grid through this, and so does each stage of ``bench.run --tune`` (the
trials into RESULTS/tuning, then the chosen configurations into RESULTS), so a finished run is never
run twice unless ``--force`` and every stage reports its failed jobs the same way.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Sequence

from bench.config import RunConfig
from bench.engine.execution import Execution
from bench.launch.submit import LaunchOptions, launch
from bench.store.records import find_record


def launch_missing(runs: Sequence[RunConfig], results_dir: Path, execution: Execution, options: LaunchOptions,
                   what: str = "runs") -> list[RunConfig]:
    """Launch the runs without a record in ``results_dir`` (all with ``options.force``) and wait for
    them; return those that still have none. Raises ``SubmissionRefused`` when the scheduler refuses."""
    started = time.perf_counter()
    todo = list(runs) if options.force else [cfg for cfg in runs if not find_record(results_dir, cfg.hash())]
    if len(todo) < len(runs):
        print(f"{len(runs) - len(todo)} of {len(runs)} {what} already have records in {results_dir}; "
              "skipping them (--force runs them again)")
    for reference in sorted({cfg.weights for cfg in todo if (cfg.weights or "").startswith("pretrain:")}):
        from bench.engine.pretrain import ensure_pretrained
        ensure_pretrained(reference)
    reports = launch(todo, results_dir, execution, options)
    missing = [cfg for cfg in todo if not find_record(results_dir, cfg.hash())]
    print(f"\n{len(todo) - len(missing)} of {len(todo)} {what} finished in {time.perf_counter() - started:.0f} s")
    for report in reports:
        if not report.ok:
            print(f"FAILED job {report.job_id}: see {report.stderr}", file=sys.stderr)
    return missing
