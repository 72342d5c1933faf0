"""``bench.run --tune``: the trials, the selection, then the chosen configurations, in that order.

1. Every configuration's trials (``bench.tuning.plan``) run into RESULTS/tuning, as one job array on
   SLURM; only the training lists are opened.
2. Each configuration's sweep is read back from exactly its planned trials' records and the rule of
   ``bench.tuning.select`` picks its point. Nothing of the validation set has been opened so far.
3. The chosen configurations run with the grid's seeds into RESULTS and are evaluated on the
   validation set once, like any other run; so do the grid's runs at their declared values (the runs
   the grid has without ``--tune``), so that the tables set the tuned and the declared value side
   by side where they differ. Where they agree the two are one run.

Records are found by identity at every stage, so the same command run again runs nothing. With
``--tuning-from DIR`` stage 1 runs nothing: the trials must already be in DIR/tuning (CI gates the
chosen configurations this way without repeating the sweep).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from bench.config import BenchInputError, RunConfig
from bench.engine.execution import Execution
from bench.grid import check_data, with_data_identity
from bench.launch.grid import launch_missing
from bench.launch.submit import LaunchOptions
from bench.reporting.console import print_selection, print_summary
from bench.store.records import find_record, load_record, tuning_dir
from bench.tuning.plan import TuneRequest, final_runs, plan_trials
from bench.tuning.select import Sweep, sweep_key, sweep_of


def identified(trials: dict[str, list[RunConfig]], dry_run: bool) -> tuple[dict[str, list[RunConfig]], dict]:
    """The trials with the identity of their held-out split (which opens the training lists only)."""
    flat = [t for group in trials.values() for t in group]
    facts = check_data(flat, dry_run=dry_run)
    return {key: with_data_identity(group, facts) for key, group in trials.items()}, facts


def select(trials: dict[str, list[RunConfig]], folder: Path) -> dict[str, Sweep]:
    """Each configuration's sweep, from the records of exactly its planned trials in ``folder``."""
    sweeps = {}
    for key, group in trials.items():
        records = [load_record(find_record(folder, t.hash())) for t in group]
        sweeps[key] = sweep_of(sweep_key(records[0]), records)
    return sweeps


def run_trials(trials: dict[str, list[RunConfig]], folder: Path, source: Path | None, execution: Execution,
               options: LaunchOptions) -> bool:
    """Stage 1: run the missing trials into ``folder``; with ``source`` (``--tuning-from``) require
    them all there instead. False when some trial still has no record."""
    flat = [t for group in trials.values() for t in group]
    if source is not None:
        absent = [t for t in flat if not find_record(folder, t.hash())]
        if absent:
            raise BenchInputError(f"--tuning-from {source}: {len(absent)} of the {len(flat)} planned trials have "
                                  f"no record in {folder} (first: {absent[0].name}); run the sweep with "
                                  f"`python -m bench.run --tune ... --results {source}`")
        print(f"all {len(flat)} trials found in {folder}; running none")
        return True
    missing = launch_missing(flat, folder, execution, options, what="tuning trials")
    if missing:
        print(f"error: {len(missing)} trials have no record (first: {missing[0].name}); nothing is selected "
              "until every trial finished: fix the failing jobs and run the same command again", file=sys.stderr)
    return not missing


def tune(args: argparse.Namespace, runs: Sequence[RunConfig], request: TuneRequest, execution: Execution,
         options: LaunchOptions) -> int:
    """The three stages for the grid ``runs``; exit code 0, 1 (a stage left runs without records) or
    2 (bad input, raised as the input errors ``bench.run`` maps to 2)."""
    from bench.estimate import dry_run
    trials, facts = identified(plan_trials(runs, request), args.dry_run)
    flat = [t for group in trials.values() for t in group]
    if args.dry_run:
        dry_run(flat, facts)
        print(f"\nthen, on the validation set with the grid's seeds, the {len(runs)} runs of the grid at their "
              f"declared values and, for each of the {len(trials)} configurations whose sweep chooses another "
              f"point, {len(runs) // len(trials)} more")
        return 0
    source = args.tuning_from
    folder = tuning_dir(source if source is not None else args.results)
    if not run_trials(trials, folder, source, execution, options):
        return 1
    sweeps = select(trials, folder)
    print_selection(list(sweeps.values()))
    chosen = final_runs(runs, {key: sweep.chosen.point for key, sweep in sweeps.items()})
    finals = list({cfg.hash(): cfg for cfg in [*chosen, *runs]}.values())  # a choice at its declared value is one run
    finals = with_data_identity(finals, check_data(finals, dry_run=False))  # the validation lists, from here on
    missing = launch_missing(finals, args.results, execution, options, what="runs (chosen and declared values)")
    if not args.no_summary:
        print_summary(args.results, finals)
    return 1 if missing else 0
