"""Typed run configuration: the matched recipes and the identity (hash) of a run.

A run is fully determined by (method, method options, dataset, backbone, weights, recipe, seed);
``RunConfig.hash()`` names it, so a finished run is found again and skipped. Where the data lives and
how a run is executed (GPUs, micro-batch, workers) are not part of the identity: they change where
and how fast, not what is computed.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Any, Mapping

from bench.data.spec import ClipSpec
from bench.data.synthetic import SynthConfig
from bench.filehash import content_digest
from bench.tuning.spec import RECIPE_KNOBS, TrialSpec

# Bump when the engine changes what a config computes (loss, schedule, sampling of steps), so old
# records stop matching new runs instead of being silently skipped.
ENGINE_VERSION = 2  # 2: evaluation skips broken validation videos instead of replacing them

PRECISIONS = ("auto", "bf16", "fp16", "fp32")
DATASET_RECIPES = {"k400": "k400", "ssv2": "ssv2", "synth_appearance": "synth", "synth_motion": "synth_motion"}


class BenchInputError(ValueError):
    """Bad command-line input: the message says what was wrong and how to fix it."""


class ConfigError(ValueError):
    """A recipe or run option with an impossible value; the message names the field and the fix."""

    def __init__(self, where: str, problem: str):
        self.where = where
        super().__init__(f"{where}: {problem}")


@dataclass(frozen=True)
class RecipeConfig:
    """The matched training and evaluation recipe: identical for every method except what each method
    declares for the recipe's ``family`` in its own file (``methods.MethodSpec``: a base learning rate
    where it needs its own, module options such as a preset).

    ``batch_size`` is the *global* batch (clips per optimizer step, summed over GPUs and gradient
    accumulation), so a recipe means the same optimisation on 1 GPU or 32. ``method_lr`` False makes
    ``base_lr`` hold for every method: after ``--lr``, and in a run's own recipe (``for_method``),
    where it is already the method's.
    """

    name: str
    epochs: int
    warmup_epochs: float
    batch_size: int
    base_lr: float  # per 256 clips; the peak lr is base_lr * batch_size / 256
    clip: ClipSpec
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.999)
    precision: str = "auto"  # auto: bf16 autocast on GPU, fp32 on CPU; fp16 adds a GradScaler
    half_frozen: bool = False  # hold frozen weights in the autocast dtype (GPU only)
    head_dropout: float = 0.5  # the shared head's dropout (DESIGN.md §2)
    family: str | None = None  # whose method rules apply ("k400", "ssv2", "synth"); None: none
    method_lr: bool = True

    def __post_init__(self) -> None:
        where = f"recipe '{self.name}'"
        if self.epochs < 1:
            raise ConfigError(f"{where} epochs", f"must be >= 1, got {self.epochs}")
        if not 0 <= self.warmup_epochs <= self.epochs:
            raise ConfigError(f"{where} warmup_epochs", f"must be in [0, epochs={self.epochs}], got {self.warmup_epochs}")
        if self.batch_size < 1:
            raise ConfigError(f"{where} batch_size", f"must be >= 1, got {self.batch_size}")
        if not (self.base_lr > 0 and math.isfinite(self.base_lr)):
            raise ConfigError(f"{where} base_lr", f"must be a positive number, got {self.base_lr}")
        if self.weight_decay < 0:
            raise ConfigError(f"{where} weight_decay", f"must be >= 0, got {self.weight_decay}")
        if not 0 <= self.head_dropout < 1:
            raise ConfigError(f"{where} head_dropout", f"must be in [0, 1), got {self.head_dropout}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"{where} precision", f"{self.precision!r} is not one of {PRECISIONS}")

    def base_lr_for(self, method: str) -> float:
        """The method's base lr: its own rule for this family, else the recipe's."""
        if not self.method_lr or self.family is None:
            return self.base_lr
        from methods import get_method
        return get_method(method).base_lr_for(self.family, self.base_lr)

    def peak_lr(self, method: str) -> float:
        """Linear scaling rule: the lr grows with the global batch."""
        return self.base_lr_for(method) * self.batch_size / 256

    def options_for(self, method: str, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The options ``method`` declares for this family, updated by the user's."""
        from methods import get_method
        declared = get_method(method).options_for(self.family) if self.family is not None else {}
        return {**declared, **(overrides or {})}

    def for_method(self, method: str) -> "RecipeConfig":
        """This recipe as ``method`` runs it: ``base_lr`` resolved, so a record says what was used."""
        if not self.method_lr:
            return self
        return dataclasses.replace(self, base_lr=self.base_lr_for(method), method_lr=False)

    def with_overrides(self, **changes: Any) -> "RecipeConfig":
        """A copy with some fields changed; the name records the change so tables never mix the two."""
        clip_fields = {f.name for f in dataclasses.fields(ClipSpec)}
        current = {**dataclasses.asdict(self.clip), **{f.name: getattr(self, f.name) for f in dataclasses.fields(self)}}
        changes = {k: v for k, v in changes.items() if v is not None and (k not in current or current[k] != v)}
        if not changes:
            return self
        clip_changes = {k: v for k, v in changes.items() if k in clip_fields}
        own = {k: v for k, v in changes.items() if k not in clip_fields}
        unknown = set(own) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise ConfigError(f"recipe '{self.name}'", f"unknown field(s) {sorted(unknown)}")
        label = ",".join(f"{k}={v}" for k, v in sorted(changes.items()))
        clip = dataclasses.replace(self.clip, **clip_changes) if clip_changes else self.clip
        return dataclasses.replace(self, name=f"{self.name}({label})", clip=clip, **own)

    def to_dict(self) -> dict[str, Any]:
        return _plain(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "RecipeConfig":
        data = dict(data)
        clip = data.pop("clip")
        clip = ClipSpec(**{k: tuple(v) if isinstance(v, list) else v for k, v in clip.items()})
        data["betas"] = tuple(data["betas"])
        return cls(clip=clip, **data)


def _plain(value: Any) -> Any:
    """JSON-ready: tuples as lists, mappings as sorted dicts."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in sorted(value.items())}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


# -- Presets -------------------------------------------------------------------------------------
# DESIGN.md §4, from the reference training scripts: K400 ran 3 GPUs x 64 clips (global 192),
# SSv2 4 GPUs x 64 (global 256), both with base lr 1e-3 per 256 clips. Methods that need their own
# lr or options under a family say so in their file (e.g. full_ft, st_adapter's presets).

K400 = RecipeConfig(
    name="k400", epochs=12, warmup_epochs=2, batch_size=192, base_lr=1e-3,
    clip=ClipSpec(num_frames=8, sampling="dense", stride=16, input_size=224, augment="k400",
                  short_side_range=(224, 258), test_clips=3, test_crops=1),
    precision="fp16", half_frozen=True, family="k400",
)

SSV2 = RecipeConfig(
    name="ssv2", epochs=50, warmup_epochs=2, batch_size=256, base_lr=1e-3,
    clip=ClipSpec(num_frames=8, sampling="uniform", input_size=224, augment="ssv2",
                  test_clips=1, test_crops=3),
    precision="fp16", half_frozen=True, family="ssv2",
)

# The embedded default (DESIGN.md §7): 4-frame clips of 32 px synthetic videos on a small ViT (17
# tokens per frame) pre-trained on stills, sized so that the default grid fits in minutes on 2 CPU
# cores. As K400 and SSv2 do, the two tasks get their own schedule: the appearance task needs a few
# epochs, the motion task (whose time-reversed pairs only temporal modules can tell apart) needs four
# times more. Both are family "synth": the methods' synthetic options (sized for the 64-wide ViT) and
# learning rates are in their files, with the sweeps that chose them. Values chosen by measurement
# on the synthetic tasks (see README, "the embedded default"):
# - base lr 0.1 per 256 clips (peak 0.0125 at batch 32): ST-Adapter's zero-initialised temporal conv
#   needs a high lr to learn the motion pairs in 16 epochs (methods/st_adapter.py has the sweep);
# - head dropout 0: Dropout(0.5) on a 64-wide feature starves the short schedules.
_SYNTH_COMMON = dict(
    batch_size=32, base_lr=0.1, head_dropout=0.0, precision="auto", family="synth",
    clip=ClipSpec(num_frames=4, sampling="uniform", input_size=32, augment="none",
                  short_side_range=(32, 32), test_clips=1, test_crops=1),
)
SYNTH = RecipeConfig(name="synth", epochs=4, warmup_epochs=1, **_SYNTH_COMMON)
SYNTH_MOTION = RecipeConfig(name="synth_motion", epochs=16, warmup_epochs=2, **_SYNTH_COMMON)

RECIPES: dict[str, RecipeConfig] = {r.name: r for r in (K400, SSV2, SYNTH, SYNTH_MOTION)}
RECIPE_FAMILIES = frozenset(r.family for r in RECIPES.values())

# The synthetic world the default suite generates (its content is part of a synthetic run's identity).
# 64 validation clips per class (640 per task): a model's top-1 on them is within about 2 points of
# its accuracy on the task (binomial standard error at 50%), so seeds and environments are compared
# on the model, not on which 160 clips happened to be drawn.
SYNTH_WORLD = SynthConfig(size=32, frames=16, train_per_class=64, val_per_class=64)


def get_recipe(name: str) -> RecipeConfig:
    if name not in RECIPES:
        raise ConfigError("--recipe", f"unknown recipe {name!r}; choose one of {sorted(RECIPES)}")
    return RECIPES[name]


def default_recipe(dataset: str) -> RecipeConfig:
    if dataset not in DATASET_RECIPES:
        raise ConfigError("--recipe", f"dataset {dataset!r} has no default recipe; pass --recipe "
                          f"({', '.join(sorted(RECIPES))})")
    return RECIPES[DATASET_RECIPES[dataset]]


@dataclass(frozen=True)
class RunConfig:
    """One matched run. ``weights`` is a file path, an open_clip tag, or a ``pretrain:`` reference."""

    method: str
    dataset: str
    backbone: str
    recipe: RecipeConfig
    seed: int
    weights: str | None = None
    method_options: Mapping[str, Any] = field(default_factory=dict)
    synth: SynthConfig | None = None  # the generated world, for the synthetic datasets
    data_root: str | None = None  # where the data is, not what it is: outside the identity
    precision: str = "fp32"  # what runs: the recipe's "auto" resolved for the planned device
    data: Mapping[str, Any] | None = None  # bench.data.identity of the validation set, from planning
    init: str | None = None  # a trainable-weights checkpoint loaded on top of the weights (--init)
    eval_only: bool = False  # evaluate the (initialised) model without training (bench.eval)
    # Recipe fields a tuning protocol set away from the method's declared rule ({"base_lr": 0.03}):
    # another configuration than the declared one, so tables, records and the gate name it apart.
    tuned: Mapping[str, float] | None = None
    trial: TrialSpec | None = None  # a tuning trial: trained and scored on the training list's split

    def __post_init__(self) -> None:
        recipe = self.recipe.for_method(self.method)  # this method's lr
        if self.tuned:
            unknown = sorted(set(self.tuned) - set(RECIPE_KNOBS.values()))
            if unknown:
                raise ConfigError("run tuned", f"{unknown} are not tunable recipe fields; tunable: "
                                  f"{sorted(RECIPE_KNOBS.values())}")
            recipe = dataclasses.replace(recipe, **self.tuned)
        object.__setattr__(self, "recipe", recipe)

    def identity(self) -> dict[str, Any]:
        """Everything that determines the result, and nothing else: the recipe as this method runs it
        (other methods' rules are not part of it) and this method's options."""
        recipe = self.recipe.to_dict()
        del recipe["name"], recipe["family"]  # content, not labels
        return _plain({
            "engine_version": ENGINE_VERSION, "method": self.method, "method_version": method_version(self.method),
            "method_options": self.method_options, "dataset": self.dataset, "backbone": self.backbone,
            "weights": weights_identity(self.weights), "recipe": recipe, "precision": self.precision,
            "seed": self.seed, "synth": None if self.synth is None else dataclasses.asdict(self.synth),
            "data": self.data, "init": None if self.init is None else content_digest(self.init),
            "eval_only": self.eval_only, **self._tuning(),
        })

    def _tuning(self) -> dict[str, Any]:
        """The tuning fields, only where set: a run that no tuning touched keeps its identity."""
        return {**({"tuned": dict(self.tuned)} if self.tuned else {}),
                **({"trial": self.trial.to_dict()} if self.trial is not None else {})}

    def hash(self) -> str:
        blob = json.dumps(self.identity(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:12]

    @property
    def name(self) -> str:
        """Same stem as the record file (bench.records.RunRecord.file_name)."""
        return f"{self.dataset}__{self.backbone}__{self.method}__s{self.seed}__{self.hash()}"

    @property
    def peak_lr(self) -> float:
        return self.recipe.peak_lr(self.method)

    def to_dict(self) -> dict[str, Any]:
        return _plain({
            "method": self.method, "method_options": self.method_options, "dataset": self.dataset,
            "backbone": self.backbone, "weights": self.weights, "recipe": self.recipe.to_dict(),
            "seed": self.seed, "data_root": self.data_root, "engine_version": ENGINE_VERSION,
            "method_version": method_version(self.method), "precision": self.precision, "data": self.data,
            "init": self.init, "eval_only": self.eval_only,
            "synth": None if self.synth is None else dataclasses.asdict(self.synth), **self._tuning(),
        })

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "RunConfig":
        data = dict(data)
        for derived in ("engine_version", "method_version"):
            data.pop(derived, None)
        synth, trial = data.pop("synth", None), data.pop("trial", None)
        return cls(recipe=RecipeConfig.from_dict(data.pop("recipe")),
                   synth=None if synth is None else SynthConfig(**synth),
                   trial=None if trial is None else TrialSpec.from_dict(trial), **data)


RANDOM_WEIGHTS = "random"  # no pre-trained weights: smoke tests only
WEIGHT_SCHEMES = ("open_clip:", "pretrain:")


def weights_identity(weights: str | None) -> str | None:
    """Weights by content, not by path or name: the same file mounted elsewhere is the same run, two
    different files of one name (every timm hub file is ``model.safetensors``) are two."""
    if weights is None or weights == RANDOM_WEIGHTS or weights.startswith(WEIGHT_SCHEMES):
        return weights  # open_clip tag or pre-training reference: already location-free
    return content_digest(weights)


def method_version(method: str) -> int:
    from methods import get_method
    return get_method(method).version


def effective_precision(precision: str, device_type: str) -> str:
    """What a recipe's precision means on a device: CPU runs are fp32, "auto" on a GPU is bf16."""
    if device_type != "cuda":
        return "fp32"
    return "bf16" if precision == "auto" else precision
