"""The cost axes of a configuration: trainable parameters, inference GFLOPs x views, and the training
step time and peak training memory of the H200 step benchmark (``bench.perf``); their Pareto fronts.

A user picks a method by what it costs, so every row of the report carries the four costs, each
defined once here:

- **inference GFLOPs x views**: the fvcore count of one view of the model *as deployed*, times the
  test views. A method that declares a merge (``MethodSpec.merge``: LoRA, ZeroI2V) is deployed
  merged into the frozen weights, so its model is built (random weights: values do not change a
  count), merged and counted here (``bench.counting``, cached on disk). Any other method is deployed
  as trained, whose count the run recorded (``gflops_per_view``).
- **H200 step time and peak memory**: the ``fast`` records of ``bench.perf`` in ``results/perf/``
  (median step of 32 clips x 8 x 224, bf16, fused AdamW; ``torch.cuda.max_memory_allocated``). A
  configuration takes the record of the *case* it stands for (``perf_case``): a run on the
  benchmarked backbone and clip is its own case; a run on the synthetic world stands for the method
  as the real recipe its task imitates runs it (synth_appearance: K400, synth_motion: SSv2), so its
  columns are that method's real-scale cost, not its synth_vit run's. A record matches a case when
  method, backbone, frames, input size and the method's *resolved* options are equal (presets
  expanded, defaults filled: ``{}`` and ``{"num_blocks": 1}`` are one partial_ft). No record: the
  table says so.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from bench.config import RECIPES
from bench.reporting.layout import DEFAULT_PERF
from bench.reporting.reference import ReportedRow
from bench.reporting.summary import ReportError
from bench.store.records import RecordError, RunRecord

PERF_SETTING = "fast"  # the speed changes the engine applies on GPU (README, "Measured performance")


STAND_INS = {"synth_appearance": "k400", "synth_motion": "ssv2"}  # bench.data.synthetic: K400-like, SSv2-like


STAND_IN_BACKBONE = "clip_vit_b16"  # the real recipes' backbone, the one bench.perf measures (DESIGN.md §9)


NO_RECORD = "no H200 record"


@dataclass(frozen=True)
class PerfRecord:
    """One ``bench.perf`` measurement (results/perf/*.json, kind "perf") as the report uses it."""

    file: str
    label: str  # bench.perf's case label, e.g. st_adapter_12x384
    method: str
    options: dict[str, Any]
    backbone: str
    num_frames: int
    input_size: int
    batch_size: int
    gpu: str
    params_trainable: int
    step_ms: float
    peak_memory_bytes: int
    step_ratio_to_full_ft: float | None


@dataclass(frozen=True)
class PerfCase:
    """What an H200 record must have measured to be a configuration's training cost."""

    method: str
    options: str  # the method's resolved options, canonical JSON
    backbone: str
    num_frames: int
    input_size: int
    # the real recipe family a synthetic configuration is costed at; not part of what was measured
    stands_in_for: str | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Costs:
    """One configuration's cost axes."""

    params_trainable: int
    inference_gflops_per_view: float
    views: int
    merged: bool  # inference counted on the merged model (the method declares a merge)
    case: PerfCase | None  # None: the configuration has no real-scale case (see perf_case)
    perf: PerfRecord | None  # None: no H200 record of its case

    @property
    def inference_gflops(self) -> float:
        return self.inference_gflops_per_view * self.views

    @property
    def step_ms(self) -> float | None:
        return None if self.perf is None else self.perf.step_ms

    @property
    def train_memory_gib(self) -> float | None:
        return None if self.perf is None else self.perf.peak_memory_bytes / 2**30


def resolved_options(method: str, options: dict[str, Any], where: str) -> str:
    """The method's typed options as canonical JSON: a preset expanded, defaults filled in."""
    from methods import MethodConfigError, UnknownMethodError, make_method_config
    try:
        config = make_method_config(method, **options)
    except (MethodConfigError, UnknownMethodError) as e:
        raise ReportError(f"{where}: {e}") from None
    return json.dumps(dataclasses.asdict(config), sort_keys=True)


def load_perf_records(folder: Path | str) -> list[PerfRecord]:
    """The ``fast`` step records under ``folder`` (other files and settings there are not costs), by label."""
    if not Path(folder).is_dir():
        raise ReportError(f"{folder}: no such folder of bench.perf records; pass --perf DIR (the repository's "
                          f"is {DEFAULT_PERF})")
    found = []
    for path in sorted(Path(folder).glob("*.json")):
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise ReportError(f"{path}: not a JSON file ({e})") from None
        if not (isinstance(data, dict) and data.get("kind") == "perf" and data.get("setting") == PERF_SETTING):
            continue
        try:
            spec = data["spec"]
            found.append(PerfRecord(
                file=path.name, label=data["label"], method=data["method"], options=dict(data["options"]),
                backbone=spec["backbone"], num_frames=spec["num_frames"], input_size=spec["input_size"],
                batch_size=spec["batch_size"], gpu=data["gpu"], params_trainable=data["params_trainable"],
                step_ms=float(data["step_ms"]), peak_memory_bytes=data["peak_memory_bytes"],
                step_ratio_to_full_ft=data.get("step_ratio_to_full_ft")))
        except (KeyError, TypeError) as e:
            raise ReportError(f"{path}: perf record without {e} (written by an older bench.perf? "
                              "measure again)") from None
    return sorted(found, key=lambda r: r.label)


def index_perf_records(records: Sequence[PerfRecord], folder: Path | str) -> dict[PerfCase, PerfRecord]:
    """Each record under the case it measured; two records of one case would make a cost ambiguous."""
    index: dict[PerfCase, PerfRecord] = {}
    for r in records:
        case = PerfCase(r.method, resolved_options(r.method, r.options, f"{Path(folder) / r.file}"),
                        r.backbone, r.num_frames, r.input_size)
        if case in index:
            raise ReportError(f"{Path(folder) / index[case].file} and {Path(folder) / r.file} measured the same "
                              f"case ({r.method} with the same options, {r.backbone}); remove one")
        index[case] = r
    return index


def _recipe(record: RunRecord, where: str) -> dict[str, Any]:
    recipe = record.config.get("recipe")
    if not isinstance(recipe, dict) or not isinstance(recipe.get("clip"), dict):
        raise RecordError(where, "config.recipe", "expected the recipe as the run used it (with its clip)")
    return recipe


def perf_case(record: RunRecord, where: str) -> PerfCase | None:
    """The case whose H200 record is this configuration's training cost (module docstring), or None
    when it has none: a synthetic run whose options are not the ones its recipe declares (a tuned
    width, a user's override) stands for no real-scale configuration."""
    recipe = _recipe(record, where)
    options = record.config.get("method_options") or {}
    family = STAND_INS.get(record.dataset)
    if family is None:
        clip = recipe["clip"]
        return PerfCase(record.method, resolved_options(record.method, options, where), record.backbone,
                        clip["num_frames"], clip["input_size"])
    from methods import get_method
    spec = get_method(record.method)
    declared = spec.options_for(recipe.get("family")) if recipe.get("family") else {}
    if resolved_options(record.method, options, where) != resolved_options(record.method, declared, where):
        return None
    clip = RECIPES[family].clip
    return PerfCase(record.method, resolved_options(record.method, spec.options_for(family), where),
                    STAND_IN_BACKBONE, clip.num_frames, clip.input_size, stands_in_for=family)


def inference_gflops_per_view(record: RunRecord, where: str, cache_dir: Path) -> tuple[float, bool]:
    """(GFLOPs of one view as deployed, whether that is the merged model): module docstring."""
    from methods import UnknownMethodError, build_model, get_backbone_config, get_method
    try:
        spec = get_method(record.method)
    except UnknownMethodError as e:
        raise ReportError(f"{where}: {e}") from None
    if spec.merge is None:
        return float(record.gflops_per_view), False
    if not record.per_class_top1:
        raise RecordError(where, "per_class_top1", "is empty: the class count of the deployed head is unknown")
    from bench.counting import cached_count
    clip, options = _recipe(record, where)["clip"], dict(record.config.get("method_options") or {})
    classes, frames, size = len(record.per_class_top1), clip["num_frames"], clip["input_size"]
    identity = {"method": record.method, "options": options, "classes": classes, "form": "merged",
                "backbone": dataclasses.asdict(get_backbone_config(record.backbone))}
    counts = cached_count(identity, lambda: spec.merge(build_model(
        record.method, record.backbone, classes, frames, random_init=True, method_options=options)),
        frames, size, cache_dir)
    return counts.gflops_per_view, True


def configuration_costs(record: RunRecord, where: str, perf: dict[PerfCase, PerfRecord], cache_dir: Path) -> Costs:
    """The cost axes of the configuration ``record`` is a seed of (seeds agree on all of them)."""
    gflops, merged = inference_gflops_per_view(record, where, cache_dir)
    case = perf_case(record, where)
    return Costs(params_trainable=record.params_trainable, inference_gflops_per_view=gflops, views=record.views,
                 merged=merged, case=case, perf=None if case is None else perf.get(case))


@dataclass(frozen=True)
class CostAxis:
    """One cost as the plots and the Pareto fronts read it."""

    name: str  # in file names and the CSV
    short: str  # in the tables' Pareto lines
    label: str  # the plot's x label
    log: bool  # log x axis
    of: Callable[[Costs], float | None]
    reported: Callable[[ReportedRow], float | None]  # the published figure on this axis, if any


COST_AXES = (
    CostAxis("params", "trainable params", "trainable parameters (M, log scale)", True,
             lambda c: c.params_trainable / 1e6, lambda r: r.params_trainable_m),
    CostAxis("inference_gflops", "inference GFLOPs × views", "inference GFLOPs × views (as deployed)", False,
             lambda c: c.inference_gflops,
             lambda r: None if r.gflops_per_view is None or r.views is None else r.gflops_per_view * r.views),
    # no published step time; published memory is another implementation's (GB, own precision): the
    # real-scale section sets it beside the H200 figures instead
    CostAxis("step_time", "H200 step", "H200 training step (ms), CLIP ViT-B/16, 32 clips × 8 × 224", False,
             lambda c: c.step_ms, lambda r: None),
    CostAxis("train_memory", "H200 train memory", "H200 peak training memory (GiB), CLIP ViT-B/16, 32 clips", False,
             lambda c: c.train_memory_gib, lambda r: None),
)


def pareto_front(points: Sequence[tuple[str, float, float]]) -> list[str]:
    """Names of the (name, cost, accuracy) points that no other point dominates (lower or equal cost
    and higher or equal accuracy, one of them strictly), by increasing cost: the configurations worth
    their cost. Points equal on both stay together."""
    front = [p for p in points
             if not any(c <= p[1] and a >= p[2] and (c < p[1] or a > p[2]) for _, c, a in points)]
    return [name for name, _, _ in sorted(front, key=lambda p: (p[1], -p[2], p[0]))]
