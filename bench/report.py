"""Tables and plots of the matched comparison, generated from the run records and nothing else.

``python -m bench.report`` reads every record under ``results/runs/``, summarises the seeds of each
(dataset, backbone, recipe, method) and writes ``results/README.md`` (Markdown), ``results/tables/``
(LaTeX and CSV) and ``results/plots/`` (PNG and PDF). Published numbers from
``results/reference/published.csv`` stand beside the reproduced ones, always labelled "reported".

The same records give byte-identical tables (fixed sort orders and number formats, no timestamps, no
absolute paths), which is what lets ``bench.check`` fail on a hand-edited table. Plots carry no
metadata and have a fixed size and DPI.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from bench.reporting.generate import generate
from bench.reporting.layout import DEFAULT_PERF, DEFAULT_REFERENCE, DEFAULT_RESULTS
from bench.reporting.summary import ReportError
from bench.reporting.uncertainty import DEFAULT_REFERENCE_METHOD
from bench.store.records import RecordError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.report",
        description="Generate the comparison tables and plots from the run records. Reads every "
                    "record in RESULTS/runs/*.json (a malformed one is an error naming file and field, "
                    "exit 2) and writes, for each (dataset, backbone, recipe): a table of method, "
                    "trainable parameters (M and % of the backbone), inference GFLOPs x views (the "
                    "model as deployed: merged where the method merges), top-1/top-5 "
                    "mean ± std over seeds with n, 95% intervals of top-1 over seeds (Student t) and "
                    "over validation videos (bootstrap), the number of videos, throughput and peak "
                    "memory where the runs measured them, the H200 training step and memory of the "
                    "configuration's bench.perf case ('no H200 record' where none), the Pareto front "
                    "of top-1 against each cost; the paired difference of each method against the "
                    "reference method (paired bootstrap over videos and seeds: 95% interval, p-value, "
                    "distinguishable at 5%); published numbers for the same dataset labelled "
                    "'reported'. Outputs: OUT/README.md (Markdown), OUT/tables/*.tex and *.csv, "
                    "OUT/plots/*.png and *.pdf (accuracy vs each cost with its Pareto front, datasets by "
                    "method, paired differences, training curves per group). The same records always give "
                    "byte-identical tables.")
    parser.add_argument("--results", type=Path, default=DEFAULT_RESULTS,
                        help="results directory holding runs/*.json (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=None,
                        help="where README.md, tables/ and plots/ go (default: the --results directory)")
    parser.add_argument("--reference", type=Path, default=DEFAULT_REFERENCE,
                        help="CSV of published numbers set beside the reproduced ones "
                             "(default: the repository's results/reference/published.csv)")
    parser.add_argument("--perf", type=Path, default=DEFAULT_PERF, metavar="DIR",
                        help="the bench.perf records (setting fast) behind the H200 cost columns "
                             "(default: the repository's results/perf)")
    parser.add_argument("--reference-method", default=DEFAULT_REFERENCE_METHOD, metavar="METHOD",
                        help="the method every other one is compared with, paired by video and seed: a "
                             "method id, or a full label such as 'st_adapter[preset=24x384]' when a group "
                             "holds several of its presets (default: %(default)s)")
    parser.add_argument("--no-plots", action="store_true", help="write the tables only (no matplotlib)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        paths = generate(args.results, args.out, args.reference, plots=not args.no_plots,
                         reference_method=args.reference_method, perf=args.perf)
    except (RecordError, ReportError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for path in paths:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
