"""``python -m bench.run``: plan the matched grid (methods x datasets x seeds), run it, record it.

With no arguments it runs the embedded default: every method on the two synthetic tasks with 3 seeds
on a small ViT pre-trained on synthetic stills, on this machine's CPUs, and prints a summary table.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from bench.config import (RANDOM_WEIGHTS, RECIPES, SYNTH_WORLD, WEIGHT_SCHEMES, ConfigError, RecipeConfig,
                          RunConfig, default_recipe, get_recipe)
from bench.engine import Execution
from bench.launch import LaunchOptions

SYNTH_DATASETS = ("synth_appearance", "synth_motion")
REAL_DATASETS = ("k400", "ssv2", "list")
DATASETS = (*SYNTH_DATASETS, *REAL_DATASETS)
DEFAULT_REAL_BACKBONE = "clip_vit_b16"
# Used by --dry-run when the data is not on this machine (DESIGN.md §5; K400 train is nominal).
NOMINAL_SIZES = {"k400": (400, 240_000, 19_877), "ssv2": (174, 168_913, 24_777)}
# Sustained training rate for the GPU-hour estimate: full fine-tuning of ViT-B/16 (8x224, 32 clips,
# bf16) took 94 ms per step on one H200 (DESIGN.md §9) = 3 x 140.5 GFLOPs x 32 / 0.094 s.
SUSTAINED_FLOPS = 3 * 140.5e9 * 32 / 0.094


class BenchInputError(ValueError):
    """Bad command-line input: the message says what was wrong and how to fix it."""


def _input_errors() -> tuple[type[Exception], ...]:
    """Every exception type that means 'the user asked for something impossible' (exit code 2)."""
    from bench.data.roots import DatasetRootError
    from bench.data.spec import ClipSpecError
    from bench.slurm_profile import ProfileError
    from methods import BackboneError, MethodConfigError, UnknownMethodError, WeightsError
    return (BenchInputError, ConfigError, DatasetRootError, ClipSpecError, ProfileError, BackboneError,
            MethodConfigError, UnknownMethodError, WeightsError)


# -- Parsing --------------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=__doc__,
        epilog="""examples:
  python -m bench.run                                   # embedded default (CPU, ~10 min on 2 cores)
  python -m bench.run --methods st_adapter,full_ft --datasets k400,ssv2 \\
      --weights ViT-B-16.pt --executor slurm --slurm-profile mycluster
  python -m bench.run --dry-run --methods st_adapter,full_ft --datasets k400,ssv2 --backbone clip_vit_b16
  python -m bench.run --datasets synth_motion --methods st_adapter --seeds 1 --epochs 2   # quick look

A run is named by a hash of (method, options, dataset, backbone, weights, recipe, seed); runs whose
record already exists under RESULTS/runs are skipped unless --force. Logs and checkpoints live in
RESULTS/work/<run>/; an interrupted run resumes from its last epoch when started again.""")
    grid = parser.add_argument_group("the grid")
    grid.add_argument("--methods", default="all", help="comma-separated methods, or 'all' (default)")
    grid.add_argument("--datasets", default=",".join(SYNTH_DATASETS),
                      help=f"comma-separated datasets from {', '.join(DATASETS)} (default: the synthetic pair)")
    grid.add_argument("--backbone", default=None,
                      help="frame encoder (default: synth_vit for synthetic data, clip_vit_b16 otherwise)")
    grid.add_argument("--weights", default=None,
                      help="pre-trained backbone weights: a file (OpenAI .pt, open_clip, timm) or "
                           "open_clip:MODEL/TAG (synth_vit: pre-trained automatically); 'random' for "
                           "smoke tests without weights")
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
    return parser


def _split(text: str, what: str) -> list[str]:
    items = [x.strip() for x in text.split(",") if x.strip()]
    if not items:
        raise BenchInputError(f"--{what} is empty; give a comma-separated list")
    return list(dict.fromkeys(items))


def parse_methods(text: str) -> list[str]:
    from methods import list_methods
    known = list_methods()
    if text.strip() == "all":
        return known
    methods = _split(text, "methods")
    unknown = [m for m in methods if m not in known]
    if unknown:
        raise BenchInputError(f"--methods: unknown method(s) {unknown}; choose from {known} or 'all'")
    return methods


def parse_datasets(text: str) -> list[str]:
    datasets = _split(text, "datasets")
    unknown = [d for d in datasets if d not in DATASETS]
    if unknown:
        raise BenchInputError(f"--datasets: unknown dataset(s) {unknown}; choose from {list(DATASETS)}")
    return datasets


def parse_seeds(text: str) -> list[int]:
    try:
        values = [int(x) for x in _split(text, "seeds")]
    except ValueError:
        raise BenchInputError(f"--seeds {text!r}: give a count (3) or a list of integers (0,1,2)") from None
    if len(values) == 1 and "," not in text:
        if values[0] < 1:
            raise BenchInputError(f"--seeds {values[0]}: need at least one seed")
        return list(range(values[0]))
    return values


def parse_method_options(items: Sequence[str], methods: Sequence[str]) -> dict[str, dict[str, Any]]:
    options: dict[str, dict[str, Any]] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        method, dot, name = key.partition(".")
        if not (sep and dot and method and name):
            raise BenchInputError(f"--method-option {item!r}: write METHOD.KEY=VALUE, e.g. st_adapter.preset=24x384")
        if method not in methods:
            raise BenchInputError(f"--method-option {item!r}: method {method!r} is not in --methods {list(methods)}")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        options.setdefault(method, {})[name] = value
    return options


def parse_roots(items: Sequence[str], datasets: Sequence[str]) -> dict[str, str]:
    roots = {}
    for item in items:
        dataset, sep, path = item.partition("=")
        if not sep or dataset not in datasets:
            raise BenchInputError(f"--root {item!r}: write DATASET=PATH with DATASET one of {list(datasets)}")
        roots[dataset] = path
    return roots


# -- Planning -------------------------------------------------------------------------------------

def recipe_for(dataset: str, args: argparse.Namespace) -> RecipeConfig:
    recipe = get_recipe(args.recipe) if args.recipe else default_recipe(dataset)
    overrides = {"epochs": args.epochs, "warmup_epochs": args.warmup_epochs, "batch_size": args.batch_size,
                 "base_lr": args.lr, "precision": args.precision, "num_frames": args.num_frames}
    if args.lr is not None:
        overrides["method_base_lr"] = {}
    if args.epochs is not None and args.warmup_epochs is None:
        overrides["warmup_epochs"] = min(recipe.warmup_epochs, args.epochs)
    return recipe.with_overrides(**overrides)


def default_weights(backbone: str, weights: str | None) -> str | None:
    if weights is None and backbone == "synth_vit":
        from bench.pretrain import DEFAULT
        return DEFAULT.reference
    return weights


def plan(args: argparse.Namespace) -> list[RunConfig]:
    """Every run of the grid, validated: names, options, recipes, weights (not the data: see check_data)."""
    import bench.pretrain  # noqa: F401  (registers the synth_vit backbone)
    from methods import get_backbone_config, make_method_config
    methods, datasets, seeds = parse_methods(args.methods), parse_datasets(args.datasets), parse_seeds(args.seeds)
    backbone = args.backbone or ("synth_vit" if set(datasets) <= set(SYNTH_DATASETS) else DEFAULT_REAL_BACKBONE)
    backbone_cfg = get_backbone_config(backbone)
    weights = default_weights(backbone, args.weights)
    if weights is None and not args.dry_run:
        raise BenchInputError(f"--weights: backbone {backbone!r} needs pre-trained weights (an OpenAI "
                              "ViT-B-16.pt, an open_clip or timm checkpoint, or open_clip:MODEL/TAG); "
                              "--dry-run works without them")
    if (weights is not None and weights != RANDOM_WEIGHTS and not weights.startswith(WEIGHT_SCHEMES)
            and not Path(weights).is_file()):
        raise BenchInputError(f"--weights {weights}: no such file")
    user_options = parse_method_options(args.method_option, methods)
    roots = parse_roots(args.root, datasets)
    runs = []
    for dataset in datasets:
        recipe = recipe_for(dataset, args)
        if recipe.clip.input_size != backbone_cfg.img_size:
            raise BenchInputError(f"recipe {recipe.name!r} feeds {recipe.clip.input_size} px frames but backbone "
                                  f"{backbone!r} takes {backbone_cfg.img_size} px; pick a matching --recipe")
        for method in methods:
            options = recipe.options_for(method, user_options.get(method))
            make_method_config(method, **dict(options)).check_backbone(backbone_cfg)  # fail now, not in a job
            for seed in seeds:
                runs.append(RunConfig(method=method, dataset=dataset, backbone=backbone, recipe=recipe,
                                      seed=seed, weights=weights, method_options=options,
                                      synth=SYNTH_WORLD if dataset in SYNTH_DATASETS else None,
                                      data_root=roots.get(dataset)))
    return runs


@dataclass(frozen=True)
class DataFacts:
    num_classes: int
    train_clips: int
    val_videos: int
    measured: bool  # False: nominal sizes (the data is not on this machine)


def data_key(cfg: RunConfig) -> tuple:
    return cfg.dataset, cfg.data_root, cfg.synth, cfg.recipe.clip


def check_data(runs: Sequence[RunConfig], dry_run: bool) -> dict[tuple, DataFacts]:
    """Open every (dataset, root, world, clip) once: validates roots and layouts, generates the
    synthetic videos on first use (not in a dry run: their sizes follow from the world's config), and
    returns the sizes the dry run needs. Real data missing in a dry run falls back to nominal sizes."""
    from bench.data import build_dataset
    from bench.data.roots import DatasetRootError
    from bench.data.synthetic import class_names
    facts = {}
    for cfg in runs:
        key = data_key(cfg)
        if key in facts:
            continue
        if dry_run and cfg.synth is not None:
            classes = len(class_names(cfg.dataset))
            facts[key] = DataFacts(classes, classes * cfg.synth.train_per_class,
                                   classes * cfg.synth.val_per_class, measured=True)
            continue
        try:
            sizes = [build_dataset(cfg.dataset, split, cfg.recipe.clip, train=split == "train", root=cfg.data_root,
                                   synth=cfg.synth) for split in ("train", "val")]
            facts[key] = DataFacts(sizes[0].num_classes, len(sizes[0]), len(sizes[1]), measured=True)
        except DatasetRootError:
            if not dry_run or cfg.dataset not in NOMINAL_SIZES:
                raise
            facts[key] = DataFacts(*NOMINAL_SIZES[cfg.dataset], measured=False)
    return facts


# -- Dry run --------------------------------------------------------------------------------------

def dry_run(runs: Sequence[RunConfig], facts: dict[tuple, DataFacts]) -> None:
    """One line per (dataset, method): parameters, GFLOPs x views and estimated GPU-hours."""
    from tabulate import tabulate
    from bench.counting import cached_count
    from bench.data.synthetic import cache_root
    from methods import build_model, get_backbone_config
    rows, total_hours = [], 0.0
    for cfg in runs:
        data, clip = facts[data_key(cfg)], cfg.recipe.clip
        identity = {"method": cfg.method, "options": cfg.method_options, "classes": data.num_classes,
                    "backbone": dataclasses.asdict(get_backbone_config(cfg.backbone))}
        counts = cached_count(
            identity, lambda: build_model(cfg.method, cfg.backbone, data.num_classes, clip.num_frames,
                                          random_init=True, method_options=dict(cfg.method_options)),
            clip.num_frames, clip.input_size, cache_root() / "counts")
        flops = counts.gflops_per_view * 1e9 * (3 * cfg.recipe.epochs * data.train_clips
                                                 + clip.views * data.val_videos)
        hours = flops / SUSTAINED_FLOPS / 3600
        total_hours += hours
        rows.append((cfg.dataset, cfg.method, cfg.seed, cfg.recipe.name, f"{counts.params_trainable:,}",
                     f"{counts.params_total:,}", f"{counts.gflops_per_view:.1f} x {clip.views}",
                     f"{hours:.1f}", cfg.hash()))
    print(tabulate(rows, headers=("dataset", "method", "seed", "recipe", "trainable", "total",
                                  "GFLOPs/view x views", "GPU-h (est.)", "config"),
                   colalign=("left", "left", "right", "left", "right", "right", "right", "right", "left")))
    nominal = sorted({cfg.dataset for cfg in runs
                      if not facts[data_key(cfg)].measured})
    print(f"\n{len(runs)} runs, about {total_hours:,.0f} GPU-hours in total (estimate: 3 x forward FLOPs "
          f"per training clip, at the {SUSTAINED_FLOPS / 1e12:.0f} TFLOP/s full fine-tuning sustained on "
          "one H200, DESIGN.md §9).")
    if nominal:
        print(f"Data not found for {', '.join(nominal)}: nominal sizes used "
              f"({', '.join(f'{d}: {NOMINAL_SIZES[d][1]:,} train / {NOMINAL_SIZES[d][2]:,} val' for d in nominal)}).")
    for cfg in runs[:1]:
        print(f"\nfirst run's config ({cfg.name}):\n{json.dumps(cfg.to_dict(), indent=2)}")


# -- Launching ------------------------------------------------------------------------------------

def launch_options(args: argparse.Namespace) -> tuple[LaunchOptions, Execution]:
    """Where and how the jobs run: SLURM from the profile; locally one job per core on CPU (one
    torch thread each) or one job at a time over all GPUs (DDP)."""
    import torch
    cores = os.cpu_count() or 1
    gpus = torch.cuda.device_count()
    slurm_params: dict[str, Any] = {}
    if args.executor == "slurm":
        if not args.slurm_profile:
            raise BenchInputError("--executor slurm needs --slurm-profile (a name under slurm/profiles/ or a YAML file)")
        from bench.slurm_profile import load_profile
        profile = load_profile(args.slurm_profile)
        slurm_params = profile.to_submitit_params()
        tasks, threads, workers = profile.tasks * profile.nodes, None, max(0, profile.cpus_per_task - 1)
    elif args.slurm_profile:
        raise BenchInputError("--slurm-profile only applies to --executor slurm")
    elif gpus:
        if args.gpus is not None and not 1 <= args.gpus <= gpus:
            raise BenchInputError(f"--gpus {args.gpus}: this machine has {gpus} GPU(s)")
        tasks, threads, workers = args.gpus or gpus, None, max(0, cores // (args.gpus or gpus) - 1)
    else:
        if args.gpus:
            raise BenchInputError(f"--gpus {args.gpus}: this machine has no GPU")
        tasks, threads, workers = 1, None, 0
    parallel = args.parallel or (1 if gpus else cores)
    if parallel < 1 or (args.runs_per_job is not None and args.runs_per_job < 1):
        raise BenchInputError("--parallel and --runs-per-job must be >= 1")
    if not gpus and args.executor != "slurm":
        threads = max(1, cores // parallel)  # CPU jobs side by side: split the cores, do not oversubscribe
    options = LaunchOptions(executor=args.executor, parallel=parallel, runs_per_job=args.runs_per_job,
                            tasks_per_job=tasks, gpus_per_job=tasks if gpus and args.executor == "local" else 0,
                            slurm_params=slurm_params, force=args.force)
    execution = Execution(batch_per_device=args.batch_per_device, threads=threads,
                          num_workers=args.workers if args.workers is not None else workers,
                          progress=args.executor == "debug" or (args.executor == "local" and parallel == 1))
    return options, execution


def print_summary(results_dir: Path, runs: Sequence[RunConfig]) -> None:
    """Mean ± std of top-1/top-5 per (dataset, method) over the runs of this invocation."""
    from tabulate import tabulate
    from bench.records import find_record, load_record
    from bench.report import summarize
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


def _mean_std(values: Sequence[float]) -> str:
    mean = sum(values) / len(values)
    if len(values) < 2:
        return f"{mean:.1f}"
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
    return f"{mean:.1f} ± {std:.1f}"


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    started = time.perf_counter()
    try:
        runs = plan(args)
        options, execution = launch_options(args)
        facts = check_data(runs, dry_run=args.dry_run)
    except _input_errors() as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.dry_run:
        dry_run(runs, facts)
        return 0
    from bench.launch import launch
    from bench.records import find_record
    todo = runs if args.force else [cfg for cfg in runs if not find_record(args.results, cfg.hash())]
    if len(todo) < len(runs):
        print(f"{len(runs) - len(todo)} of {len(runs)} runs already have records in {args.results}; "
              "skipping them (--force runs them again)")
    for reference in sorted({cfg.weights for cfg in todo if (cfg.weights or "").startswith("pretrain:")}):
        from bench.pretrain import ensure_pretrained
        ensure_pretrained(reference)
    reports = launch(todo, args.results, execution, options)
    missing = [cfg.name for cfg in todo if not find_record(args.results, cfg.hash())]
    print(f"\n{len(todo) - len(missing)} of {len(todo)} runs finished in {time.perf_counter() - started:.0f} s")
    for report in reports:
        if not report.ok:
            print(f"FAILED job {report.job_id}: see {report.stderr}", file=sys.stderr)
    if not args.no_summary:
        print_summary(args.results, runs)
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
