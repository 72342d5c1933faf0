"""``python -m bench.check``: the regression gate, fresh run records against the committed baselines.

It prints one table row per fresh configuration (mode, fresh and baseline top-1, change, tolerance,
verdict, why) and fails (exit 1) when

- under the baselines' environment fingerprint, any number of any seed moved (exact mode), or under
  another fingerprint the mean top-1 fell by more than the calibrated tolerance (statistical mode);
- a deterministic fact changed, on any machine: trainable parameters, test views, GFLOPs per view
  (0.5%), the code's probes (function, frame-order awareness, trainable set, lr schedule, the first
  clips the loader yields), or an order-aware method no longer beats the order-blind ones on
  synth_motion;
- a committed table (``README.md``, ``tables/*``) differs from what ``bench.report`` generates from
  the committed records, or a table or plot is missing.

The rules and their calibration are in bench/gate; the README's "Reproducible installs" says what to
expect on another machine. Input errors (malformed records or baselines) exit 2.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from tabulate import tabulate

from bench.gate.baselines import (
    BASELINES_NAME,
    TOLERANCE_RULE,
    BaselineError,
    derive,
    load_baselines,
    numerics_facts,
    write_baselines,
)
from bench.gate.compare import GateResult, compare
from bench.gate.probes import data_probe, model_probes
from bench.gate.tables import check_tables
from bench.reporting.layout import DEFAULT_REFERENCE, DEFAULT_RESULTS
from bench.reporting.summary import ReportError
from bench.store.records import RecordError, load_records

REFRESH = ("if the change is intended, refresh the baselines from trusted records: `python -m bench.run` "
           "(the default suite, into results/), `python -m bench.report`, then `python -m bench.check "
           "--write-baselines --drift results/drift/<env>` and commit results/ in a commit of its own")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.check", formatter_class=argparse.RawDescriptionHelpFormatter,
        description=__doc__.split("\n\n")[0] + f"\n\nRule: {TOLERANCE_RULE}.",
        epilog="Exit 0: passed; 1: a regression or a table problem; 2: malformed records or baselines.")
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
                        help="derive the baselines from the records in --results (with their probes from "
                             "the current code), write them to the baselines file and exit")
    parser.add_argument("--drift", nargs="+", default=[], metavar="DIR[:REFERENCE]",
                        help="with --write-baselines: results folders of the same configurations, each "
                             "under another environment, to calibrate the tolerance; DIR:REFERENCE pairs "
                             "a folder with the records of the same (older) code on the baselines' "
                             "environment, which its drift is measured against (default: the baselines)")
    return parser


def _drift_records(spec: str) -> tuple[list, list | None]:
    """``DIR`` or ``DIR:REFERENCE`` -> (the drifted records, the reference records or None)."""
    folder, _, reference = spec.partition(":")
    return load_records(Path(folder)), load_records(Path(reference)) if reference else None


def print_gate(gate: GateResult) -> None:
    if gate.rows:
        print(tabulate([(r.config, r.mode, r.fresh, r.baseline, r.change, r.tolerance, r.verdict, r.why)
                        for r in gate.rows],
                       headers=("configuration", "mode", "fresh top-1", "baseline", "change", "tolerance",
                                "verdict", "why")))
    for title, lines in (("note", gate.notes), ("warning", gate.warnings)):
        for line in lines:
            print(f"{title}: {line}")


def run(args: argparse.Namespace) -> int:
    baselines_path = args.baselines or args.committed / BASELINES_NAME
    records = load_records(args.results)
    if args.write_baselines:
        bset = derive(records, {spec: _drift_records(spec) for spec in args.drift})
        write_baselines(baselines_path, bset)
        worst = bset.calibration.get("max_abs_drift_z")
        print(f"wrote {len(bset.baselines)} baselines to {baselines_path}"
              + (f"; largest measured environment drift {worst:.2f} sigma-units (limit {bset.calibration['k_sigmas']:g})"
                 if worst is not None else "; no drift records: sigma from the seeds alone"))
        held_out = bset.calibration.get("held_out_max_abs_z")
        if held_out:
            print("each environment left out of the calibration: largest |z| "
                  + ", ".join(f"{env} {z:.2f}" for env, z in held_out.items())
                  + f"; estimated false-alarm probability of one gate run "
                  f"{bset.calibration['false_alarm_per_run']:.2%}")
        return 0

    gate = compare(records, load_baselines(baselines_path),
                   probe_model=lambda b: model_probes(b.run_config, b.num_classes, b.train_clips),
                   probe_data=lambda b: data_probe(b.run_config), probe_numerics=numerics_facts)
    table_problems = check_tables(args.committed, args.reference)
    print_gate(gate)
    for line in gate.failures + table_problems:
        print(f"FAIL: {line}")
    if gate.failures or table_problems:
        print(f"bench.check: FAILED: {len(gate.failures)} regression(s), {len(table_problems)} table "
              f"problem(s); {REFRESH}")
        return 1
    print(f"bench.check: passed ({gate.checked} configuration(s) checked against their baselines; tables "
          f"match the records in {args.committed})")
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
