"""The matched grid: command-line choices parsed and validated into run configs, and the data checked.

Every run of a grid differs from the others only in method, dataset and seed; everything is
validated here, before any job starts, so a bad option fails in one line instead of in a job.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from bench.config import (
    RANDOM_WEIGHTS,
    RECIPE_FAMILIES,
    SYNTH_WORLD,
    WEIGHT_SCHEMES,
    BenchInputError,
    RecipeConfig,
    RunConfig,
    default_recipe,
    effective_precision,
    get_recipe,
)

SYNTH_DATASETS = ("synth_appearance", "synth_motion")


REAL_DATASETS = ("k400", "ssv2", "list")


DATASETS = (*SYNTH_DATASETS, *REAL_DATASETS)


DEFAULT_REAL_BACKBONE = "clip_vit_b16"


# Used by --dry-run when the data is not on this machine (DESIGN.md §5; K400 train is nominal).
NOMINAL_SIZES = {"k400": (400, 240_000, 19_877), "ssv2": (174, 168_913, 24_777)}



def _split(text: str, what: str) -> list[str]:
    items = [x.strip() for x in text.split(",") if x.strip()]
    if not items:
        raise BenchInputError(f"--{what} is empty; give a comma-separated list")
    return list(dict.fromkeys(items))


def parse_methods(text: str) -> list[str]:
    """Registered methods by name, or 'all' of them (every method file found, see methods.registry)."""
    from methods import list_methods
    known = list_methods()
    methods = known if text.strip() == "all" else _split(text, "methods")
    unknown = [m for m in methods if m not in known]
    if unknown:
        raise BenchInputError(f"--methods: unknown method(s) {unknown}; choose from {known} or 'all' "
                              "(a method in another file: --method-file PATH)")
    check_recipe_rules(methods)
    return methods


def check_recipe_rules(methods: Sequence[str]) -> None:
    """A method's lr or options for a recipe family no recipe has would silently never apply."""
    from methods import get_method
    for method in methods:
        spec = get_method(method)
        unknown = sorted((set(spec.base_lr) | set(spec.recipe_options)) - RECIPE_FAMILIES)
        if unknown:
            raise BenchInputError(f"method {method!r} ({spec.source}) declares recipe rules for unknown "
                                  f"recipe families {unknown}; the recipes' families are "
                                  f"{sorted(RECIPE_FAMILIES)}")


def load_method_files(paths: Sequence[str]) -> None:
    """Register the methods in ``paths`` here and, through the environment, in every job this process
    starts (local workers and SLURM jobs inherit it), so each job finds them by name."""
    import os

    from methods import METHOD_FILES_ENV, MethodRegistryError, load_method_file
    resolved = [str(Path(p).expanduser().resolve()) for p in paths]
    for path in resolved:
        try:
            load_method_file(path)
        except MethodRegistryError as err:
            raise BenchInputError(f"--method-file {path}: {err}") from None
    inherited = [p for p in os.environ.get(METHOD_FILES_ENV, "").split(os.pathsep) if p]
    os.environ[METHOD_FILES_ENV] = os.pathsep.join(dict.fromkeys([*inherited, *resolved]))


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


def recipe_for(dataset: str, args: argparse.Namespace) -> RecipeConfig:
    recipe = get_recipe(args.recipe) if args.recipe else default_recipe(dataset)
    overrides = {"epochs": args.epochs, "warmup_epochs": args.warmup_epochs, "batch_size": args.batch_size,
                 "base_lr": args.lr, "precision": args.precision, "num_frames": args.num_frames}
    if args.lr is not None:
        overrides["method_lr"] = False  # --lr holds for every method
    if args.epochs is not None and args.warmup_epochs is None:
        overrides["warmup_epochs"] = min(recipe.warmup_epochs, args.epochs)
    return recipe.with_overrides(**overrides)


def normalised_for(recipe: RecipeConfig, backbone) -> RecipeConfig:
    """The recipe with the backbone's input normalisation: the statistics belong to the weights
    (CLIP's for CLIP and the synthetic ViT, 0.5/0.5 for timm's augreg ViTs), and the recorded recipe
    says what the frames were normalised with."""
    clip = dataclasses.replace(recipe.clip, mean=tuple(backbone.mean), std=tuple(backbone.std))
    return recipe if clip == recipe.clip else dataclasses.replace(recipe, clip=clip)


def default_weights(backbone: str, weights: str | None) -> str | None:
    if weights is None and backbone == "synth_vit":
        from bench.engine.pretrain import DEFAULT
        return DEFAULT.reference
    return weights


def plan(args: argparse.Namespace, device_type: str) -> list[RunConfig]:
    """Every run of the grid, validated: names, options, recipes, weights, the precision that runs on
    ``device_type`` (not the data: see check_data)."""
    from methods import get_backbone_config, make_method_config
    load_method_files(args.method_file)
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
    init = getattr(args, "init", None)
    if init is not None and not Path(init).is_file():
        raise BenchInputError(f"--init {init}: no such file")
    eval_only = getattr(args, "eval_only", False)
    user_options = parse_method_options(args.method_option, methods)
    roots = parse_roots(args.root, datasets)
    runs = []
    for dataset in datasets:
        recipe = normalised_for(recipe_for(dataset, args), backbone_cfg)
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
                                      data_root=roots.get(dataset),
                                      precision=effective_precision(recipe.precision, device_type),
                                      init=None if init is None else str(Path(init).resolve()), eval_only=eval_only))
    return runs


@dataclass(frozen=True)
class DataFacts:
    num_classes: int
    train_clips: int
    val_videos: int
    measured: bool  # False: nominal sizes (the data is not on this machine)
    identity: dict | None = None  # bench.data.identity of the validation set; None when not measured


def data_key(cfg: RunConfig) -> tuple:
    return cfg.dataset, cfg.data_root, cfg.synth, cfg.recipe.clip, None if cfg.trial is None else cfg.trial.holdout


def check_data(runs: Sequence[RunConfig], dry_run: bool) -> dict[tuple, DataFacts]:
    """Open every (dataset, root, world, clip, held-out split) once (a tuning trial's "val" is its
    held-out part of the training list): validates roots and layouts, reads one sample of each split
    (a split none of whose videos decodes fails here, not in a job), generates the
    synthetic videos on first use (not in a dry run: their sizes follow from the world's config), and
    returns the sizes the dry run needs. Real data missing in a dry run falls back to nominal sizes.
    Every run must have a full global batch of training clips."""
    from bench.data import build_dataset
    from bench.data.identity import data_identity
    from bench.data.roots import DatasetRootError
    from bench.data.synthetic import class_names
    facts, missing_roots = {}, []
    for cfg in runs:
        key = data_key(cfg)
        if key in facts:
            continue
        if dry_run and cfg.synth is not None:
            classes = len(class_names(cfg.dataset))
            facts[key] = DataFacts(classes, *_sizes(classes * cfg.synth.train_per_class,
                                                    classes * cfg.synth.val_per_class, key[-1]), measured=True)
            continue
        try:
            train, val = [build_dataset(cfg.dataset, split, cfg.recipe.clip, train=split == "train",
                                        root=cfg.data_root, synth=cfg.synth, holdout=key[-1])
                          for split in ("train", "val")]
            for dataset in (train, val):
                dataset.check_readable()
            facts[key] = DataFacts(train.num_classes, len(train), len(val), measured=True,
                                   identity=data_identity(val))
        except DatasetRootError as err:
            if not dry_run or cfg.dataset not in NOMINAL_SIZES:
                missing_roots.append(err)
                facts[key] = None
                continue
            classes, train_size, val_size = NOMINAL_SIZES[cfg.dataset]
            facts[key] = DataFacts(classes, *_sizes(train_size, val_size, key[-1]), measured=False)
    if len(missing_roots) == 1:
        raise missing_roots[0]
    if missing_roots:  # every dataset that is not where it was said to be, at once
        raise BenchInputError(f"{len(missing_roots)} datasets are not found:\n" + "\n".join(map(str, missing_roots)))
    for cfg in runs:
        clips = facts[data_key(cfg)].train_clips
        if not cfg.eval_only and clips < cfg.recipe.batch_size:
            raise BenchInputError(f"{cfg.dataset}: {clips} training clips is fewer than one global batch "
                                  f"({cfg.recipe.batch_size}); lower --batch-size")
    return facts


def check_weights(runs: Sequence[RunConfig]) -> None:
    """Check every weights file of the grid against its backbone as the jobs will load it (format,
    layout, activation, keys and shapes; the tensors are mapped, not read), so that a wrong file
    fails here, in one line, not in every job. Pre-training references are checked when made."""
    from methods import check_weights as check
    from methods import get_backbone_config
    files = {(cfg.weights, cfg.backbone) for cfg in runs
             if cfg.weights not in (None, RANDOM_WEIGHTS) and not cfg.weights.startswith("pretrain:")}
    for weights, backbone in sorted(files):
        check(weights, get_backbone_config(backbone))


def check_inits(runs: Sequence[RunConfig], facts: dict[tuple, DataFacts]) -> None:
    """Check every ``--init`` checkpoint against its run's trainable set (keys and shapes) on the model
    built on the meta device (no memory, no weights), so that a mismatch fails here, not in each job
    after its model is built."""
    import torch

    from methods import build_model, check_init
    checked = set()
    for cfg in runs:
        num_classes = facts[data_key(cfg)].num_classes
        key = (cfg.init, cfg.method, repr(cfg.method_options), cfg.backbone, num_classes, cfg.recipe.clip.num_frames)
        if cfg.init is None or key in checked:
            continue
        checked.add(key)
        with torch.device("meta"):
            model = build_model(cfg.method, cfg.backbone, num_classes, cfg.recipe.clip.num_frames, random_init=True,
                                method_options=dict(cfg.method_options))
        check_init(model, cfg.init, mmap=True)


def _sizes(train: int, val: int, holdout) -> tuple[int, int]:
    """(training, evaluated) videos of a split not opened: a trial's are the training list's parts."""
    if holdout is None:
        return train, val
    held = holdout.count(train)
    return train - held, held


def with_data_identity(runs: Sequence[RunConfig], facts: dict[tuple, DataFacts]) -> list[RunConfig]:
    """The runs with the identity of the data they will read (a prepared copy or another validation
    list is another run)."""
    return [dataclasses.replace(cfg, data=facts[data_key(cfg)].identity) for cfg in runs]
