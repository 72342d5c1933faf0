"""``python -m bench.compare A B``: the runs of two result folders, paired video by video.

For two copies of a validation set, two environments or two code versions: per configuration
(dataset, backbone, recipe, method), the difference in top-1 (B minus A) on the videos both folders
evaluated, with a 95% interval and p-value from a paired bootstrap over those videos and the seeds
both ran, and how many videos each has that the other lacks. Configurations that cannot be paired
(no per-video outputs, no common seed, no shared video) are refused: nothing is compared unpaired.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from bench.reporting.comparison import compare_folders, describe, render_comparison
from bench.reporting.summary import ReportError
from bench.store.records import RecordError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.compare", description=__doc__.split("\n\n", 1)[1],
        epilog="Exit 0: compared; 2: refused (an unpaired configuration, nothing in common) or malformed records.")
    parser.add_argument("a", type=Path, help="first results directory (holding runs/*.json)")
    parser.add_argument("b", type=Path, help="second results directory")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        comparison = compare_folders(args.a, args.b)
    except (RecordError, ReportError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if comparison.refused:
        print(f"error: refusing to compare {args.a} and {args.b}:", file=sys.stderr)
        for key, reason in comparison.refused:
            print(f"  {describe(key)}: {reason}", file=sys.stderr)
        return 2
    if not comparison.compared:
        print(f"error: {args.a} and {args.b} have no configuration in common (dataset, backbone, recipe, method); "
              "nothing to compare", file=sys.stderr)
        return 2
    print(render_comparison(comparison, args.a, args.b), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
