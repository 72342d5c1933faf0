"""``python -m bench.run``: plan the matched grid (methods x datasets x seeds), run it, record it.

With no arguments it runs the embedded default: every method on the two synthetic tasks with 3 seeds
on a small ViT pre-trained on synthetic stills, on this machine's CPUs, and prints a summary table.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from bench.config import RECIPES, BenchInputError, ConfigError
from bench.estimate import dry_run
from bench.grid import (DATASETS, SYNTH_DATASETS, check_data, check_inits, check_weights, parse_seeds, plan,
                        with_data_identity)
from bench.launch.options import launch_options
from bench.reporting.console import print_summary
from bench.tuning.spec import DEFAULT_HOLDOUT, DEFAULT_POINTS, DEFAULT_TRIAL_SEEDS


def _input_errors() -> tuple[type[Exception], ...]:
    """Every exception type that means 'the user asked for something impossible' (exit code 2)."""
    from bench.data.listfile import AnnotationError
    from bench.data.robust import AllVideosBrokenError
    from bench.data.roots import DatasetRootError
    from bench.data.spec import ClipSpecError
    from bench.launch.slurm_profile import ProfileError
    from bench.data.holdout import HoldoutError
    from bench.tuning.select import SelectionError
    from bench.tuning.spec import TuningError
    from methods import BackboneError, MethodConfigError, MethodRegistryError, UnknownMethodError, WeightsError
    return (BenchInputError, ConfigError, AnnotationError, AllVideosBrokenError, DatasetRootError, ClipSpecError,
            ProfileError, BackboneError, MethodConfigError, MethodRegistryError, UnknownMethodError, WeightsError,
            HoldoutError, SelectionError, TuningError)


def build_parser(prog: str = "python -m bench.run", description: str = __doc__) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=description,
        epilog="""examples:
  python -m bench.run                                   # embedded default (CPU, ~10 min on 2 cores)
  python -m bench.run --methods st_adapter,full_ft --datasets k400,ssv2 \\
      --weights ViT-B-16.pt --executor slurm --slurm-profile mycluster
  python -m bench.run --dry-run --methods st_adapter,full_ft --datasets k400,ssv2 --backbone clip_vit_b16
  python -m bench.run --datasets synth_motion --methods st_adapter --seeds 1 --epochs 2   # quick look
  python -m bench.run --tune lr        # the default suite with every method's lr tuned on a held-out split

A run is named by a hash of (method, options, dataset, backbone, weights, recipe, seed); runs whose
record already exists under RESULTS/runs are skipped unless --force. Logs and checkpoints live in
RESULTS/work/<run>/; an interrupted run resumes from its last epoch when started again.""")
    grid = parser.add_argument_group("the grid")
    grid.add_argument("--methods", default="all", help="comma-separated methods, or 'all' (default: every "
                      "registered method)")
    grid.add_argument("--method-file", action="append", default=[], metavar="PATH",
                      help="a Python file that registers a method (@methods.register_method); repeatable; "
                           "its jobs find it through $BENCH_METHOD_FILES")
    grid.add_argument("--datasets", default=",".join(SYNTH_DATASETS),
                      help=f"comma-separated datasets from {', '.join(DATASETS)} (default: the synthetic pair)")
    grid.add_argument("--backbone", default=None,
                      help="frame encoder (default: synth_vit for synthetic data, clip_vit_b16 otherwise)")
    grid.add_argument("--weights", default=None,
                      help="pre-trained backbone weights: a file (OpenAI .pt, open_clip, timm) or "
                           "open_clip:MODEL/TAG (synth_vit: pre-trained automatically); 'random' for "
                           "smoke tests without weights")
    grid.add_argument("--init", default=None, metavar="FILE",
                      help="a checkpoint of the method's trainable weights loaded on top of --weights: the "
                           "reference ST-Adapter code's save_model file, or a run's checkpoint.pt; it must "
                           "cover the trainable set exactly (part of the run's identity)")
    grid.add_argument("--seeds", default="3", help="number of seeds (0..N-1), or a comma-separated list")
    grid.add_argument("--method-option", action="append", default=[], metavar="METHOD.KEY=VALUE",
                      help="method option, e.g. st_adapter.preset=24x384 (repeatable; VALUE is JSON or text)")
    grid.add_argument("--root", action="append", default=[], metavar="DATASET=PATH",
                      help="data root of a dataset (else BENCH_<DATASET>_ROOT or the datasets config file)")
    recipe = parser.add_argument_group("recipe (default: per dataset; overrides rename the recipe)")
    recipe.add_argument("--recipe", default=None, help=f"one of {', '.join(RECIPES)}")
    recipe.add_argument("--epochs", type=int)
    recipe.add_argument("--warmup-epochs", type=float)
    recipe.add_argument("--batch-size", type=int, help="global batch (clips per optimizer step)")
    recipe.add_argument("--lr", type=float, help="base lr per 256 clips, for every method (full_ft included)")
    recipe.add_argument("--precision", choices=("auto", "bf16", "fp16", "fp32"))
    recipe.add_argument("--frames", type=int, dest="num_frames", help="frames per clip")
    execution = parser.add_argument_group("execution")
    execution.add_argument("--executor", choices=("local", "slurm", "debug"), default="local",
                           help="local processes (default), a SLURM job array, or in-process (debug)")
    execution.add_argument("--slurm-profile", help="name under slurm/profiles/ or a YAML path (--executor slurm)")
    execution.add_argument("--parallel", type=int, help="local: jobs at once (default: CPU cores, 1 on GPU)")
    execution.add_argument("--runs-per-job", type=int, help="runs per job (default: slurm 1, local grid/parallel)")
    execution.add_argument("--gpus", type=int, default=None, help="local: GPUs (DDP processes) per run")
    execution.add_argument("--batch-per-device", type=int, help="micro-batch; larger global batches accumulate")
    execution.add_argument("--workers", type=int, default=None, help="data-loading workers per process")
    execution.add_argument("--results", default="results", type=Path, help="results directory (default: results)")
    execution.add_argument("--force", action="store_true", help="run again even if a record exists")
    execution.add_argument("--dry-run", action="store_true",
                           help="print the grid with parameters, GFLOPs and GPU-hours; train nothing")
    execution.add_argument("--no-summary", action="store_true", help="skip the summary table at the end")
    tuning = parser.add_argument_group(
        "fair tuning (README, 'Fair tuning'): every method gets the same trials, scored on a held-out part of "
        "the training set; the chosen values then run with --seeds and are evaluated on the validation set")
    tuning.add_argument("--tune", metavar="KNOBS",
                        help="comma-separated knobs: lr (base lr), wd (weight decay), or a method option the "
                             "methods declare tunable (e.g. width); several are tuned jointly (their grids' product)")
    tuning.add_argument("--tune-points", type=int, default=DEFAULT_POINTS, metavar="N",
                        help="grid points per knob, log-spaced around the declared value (odd; default: %(default)s, "
                             "half a decade apart for lr and wd)")
    tuning.add_argument("--tune-seeds", default=str(DEFAULT_TRIAL_SEEDS),
                        help="trial seeds per grid point: a count or a list (default: %(default)s)")
    tuning.add_argument("--tune-holdout", type=float, default=DEFAULT_HOLDOUT, metavar="FRACTION",
                        help="part of the training list held out to score the trials (default: %(default)s)")
    tuning.add_argument("--tuning-from", type=Path, metavar="DIR",
                        help="run no trial: select from the trials already in DIR/tuning (CI: --tuning-from results)")
    watch = parser.add_argument_group("training curves (kept in each record; they never change a result)")
    watch.add_argument("--log-every", type=int, metavar="STEPS",
                       help="optimizer steps per curve point, plus one at each epoch end (default: about 50 points per run)")
    watch.add_argument("--evaluations", type=int, default=4, metavar="N",
                       help="evaluations spread over each run for the top-1 curve, the final one included "
                            "(default: %(default)s; 1: only at the end)")
    watch.add_argument("--tensorboard", type=Path, metavar="DIR",
                       help="also write TensorBoard event files, one folder per run under DIR (needs the "
                            "optional tensorboard package: pip install 'petl-video-bench[tensorboard]')")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return execute(build_parser().parse_args(argv))


def tune_request(args: argparse.Namespace):
    """The ``--tune`` request, validated; None without ``--tune``."""
    if args.tune is None:
        if (args.tuning_from is not None or args.tune_points != DEFAULT_POINTS or args.tune_holdout != DEFAULT_HOLDOUT
                or args.tune_seeds != str(DEFAULT_TRIAL_SEEDS)):
            raise BenchInputError("--tune-points, --tune-seeds, --tune-holdout and --tuning-from apply to --tune; "
                                  "add --tune lr (or the knobs to tune)")
        return None
    if getattr(args, "eval_only", False):
        raise BenchInputError("--tune trains trials; bench.eval only evaluates checkpoints (use bench.run)")
    from bench.tuning.plan import parse_request
    return parse_request(args.tune, args.tune_points, parse_seeds(args.tune_seeds), args.tune_holdout)


def execute(args: argparse.Namespace) -> int:
    """Plan, check and launch the grid ``args`` describe (``bench.run`` and ``bench.eval``); with
    ``--tune``, its tuning protocol (``bench.tuning.protocol``)."""
    from bench.launch.submit import SubmissionRefused
    try:
        options, execution = launch_options(args)
        runs = plan(args, execution.device)
        request = tune_request(args)
        if request is not None:  # the validation lists are opened only after the selection
            from bench.tuning.protocol import tune
            check_weights(runs)
            return tune(args, runs, request, execution, options)
        facts = check_data(runs, dry_run=args.dry_run)
        check_weights(runs)
        check_inits(runs, facts)
        runs = with_data_identity(runs, facts)
    except _input_errors() + (SubmissionRefused,) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.dry_run:
        dry_run(runs, facts)
        return 0
    from bench.launch.grid import launch_missing
    try:
        missing = launch_missing(runs, args.results, execution, options)
    except SubmissionRefused as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if not args.no_summary:
        print_summary(args.results, runs)
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
