"""The regression gate: fresh run records against committed baselines, committed tables against their records.

``python -m bench.check`` fails (exit 1) when

- a configuration's mean top-1 over its fresh seeds fell below its baseline by more than the
  baseline's tolerance, ``max(TOLERANCE_SIGMAS x seed std, TOLERANCE_FLOOR)`` top-1 points. The
  per-seed spread (not the spread of the mean) is used so that even a single fresh seed is judged
  fairly; the floor keeps a few nearly identical seeds from making the gate fire on noise;
- its trainable parameter count or number of test views changed at all, or its GFLOPs per view moved
  by more than 0.5%: these are deterministic, so any change is a change of the model or protocol;
- a committed table (``README.md``, ``tables/*``) differs from what ``bench.report`` generates from
  the committed records, or a table or plot is missing, or a file under ``tables/`` is not
  generated from the records. Plots are checked for presence only: their pixels depend on the
  matplotlib and FreeType versions, not only on the records.

A fresh configuration with no baseline is a warning, not a failure: adding a method, dataset or
backbone must not need the gate's permission, and the committed tables (which are checked) already
show the new rows. Accuracy above the baseline by more than the tolerance is a warning too: it is no
regression, but it means the baselines are stale. Input errors (malformed records or baselines) exit 2.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from bench.gate.baselines import (
    BASELINES_NAME,
    GFLOPS_RELATIVE_TOLERANCE,
    TOLERANCE_FLOOR,
    TOLERANCE_SIGMAS,
    BaselineError,
    derive_baselines,
    describe_key,
    load_baselines,
    write_baselines,
)
from bench.gate.compare import compare
from bench.gate.tables import check_tables
from bench.reporting.layout import DEFAULT_REFERENCE, DEFAULT_RESULTS
from bench.reporting.summary import ReportError, summarize
from bench.store.records import RecordError, load_records


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.check",
        description="Regression gate. (1) Compares the records in RESULTS/runs against the baselines "
                    "file: per (method, dataset, backbone, recipe), the mean top-1 over fresh seeds may "
                    f"drop by at most the baseline's tolerance, max({TOLERANCE_SIGMAS:g} x per-seed std, "
                    f"{TOLERANCE_FLOOR:g}) top-1 points; trainable parameters and test views must match exactly "
                    f"and GFLOPs per view within {100 * GFLOPS_RELATIVE_TOLERANCE:g}%. A configuration "
                    "without a baseline is a warning. (2) Regenerates the tables from the records in "
                    "COMMITTED/runs and fails on any difference from COMMITTED/README.md and "
                    "COMMITTED/tables (printing a diff), or on missing plots. Exit 0: passed; 1: a "
                    "regression or table difference; 2: malformed records or baselines.",
        epilog="After trusted runs of the default suite: `python -m bench.report && "
               "python -m bench.check --write-baselines`, then commit results/.")
    parser.add_argument("--results", type=Path, default=DEFAULT_RESULTS,
                        help="directory whose runs/*.json are the fresh records to gate (default: %(default)s)")
    parser.add_argument("--committed", type=Path, default=DEFAULT_RESULTS,
                        help="directory with the committed records, README.md and tables/ whose tables "
                             "must match their records (default: %(default)s)")
    parser.add_argument("--baselines", type=Path, default=None,
                        help=f"baselines file (default: COMMITTED/{BASELINES_NAME})")
    parser.add_argument("--reference", type=Path, default=DEFAULT_REFERENCE,
                        help="published numbers used by the tables (default: the repository's "
                             "results/reference/published.csv)")
    parser.add_argument("--write-baselines", action="store_true",
                        help="derive the baselines from the records in --results, write them to the "
                             "baselines file and exit (checks nothing)")
    return parser


def _print_section(title: str, lines: Sequence[str]) -> None:
    for line in lines:
        print(f"{title}: {line}")


def run(args: argparse.Namespace) -> int:
    baselines_path = args.baselines or args.committed / BASELINES_NAME
    summaries = summarize(load_records(args.results), args.results)
    if args.write_baselines:
        baselines = derive_baselines(summaries)
        write_baselines(baselines_path, baselines)
        single = [describe_key(b.key) for b in baselines if b.n < 2]
        if single:
            print(f"warning: one seed only, tolerance is the {TOLERANCE_FLOOR:g}-point floor: " + "; ".join(single))
        print(f"wrote {len(baselines)} baselines to {baselines_path}")
        return 0

    gate = compare(summaries, load_baselines(baselines_path))
    table_problems = check_tables(args.committed, args.reference)
    _print_section("note", gate.notes)
    _print_section("warning", gate.warnings)
    _print_section("FAIL", gate.failures + table_problems)
    if gate.failures or table_problems:
        print(f"bench.check: FAILED: {len(gate.failures)} regression(s), "
              f"{len(table_problems)} table problem(s)")
        return 1
    print(f"bench.check: passed ({gate.checked} configuration(s) within their baselines; tables match "
          f"the records in {args.committed})")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except (RecordError, ReportError, BaselineError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
