"""Baselines: what each configuration of the default suite is expected to give, derived from trusted records."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from bench.atomic import atomic_write
from bench.reporting.summary import MethodSummary

BASELINES_NAME = "baselines.json"


TOLERANCE_SIGMAS = 3.0


TOLERANCE_FLOOR = 1.0  # top-1 points


GFLOPS_RELATIVE_TOLERANCE = 0.005


TOLERANCE_RULE = (f"top-1 mean may drop by at most max({TOLERANCE_SIGMAS:g} x per-seed std, "
                  f"{TOLERANCE_FLOOR:g}) points; params_trainable and views exact; gflops_per_view "
                  f"within {100 * GFLOPS_RELATIVE_TOLERANCE:g}%")


class BaselineError(ValueError):
    """A baselines file that does not follow its schema."""

    def __init__(self, path: Path | str, where: str, problem: str):
        super().__init__(f"{path}: {where}: {problem}")


@dataclass(frozen=True)
class Baseline:
    """What one configuration is expected to give, derived from its committed seeds."""

    method: str
    dataset: str
    backbone: str
    recipe: str
    n: int
    top1_mean: float
    top1_std: float | None
    top1_tolerance: float
    params_trainable: int
    gflops_per_view: float
    views: int

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (self.method, self.dataset, self.backbone, self.recipe)


def tolerance(std: float | None) -> float:
    """Allowed top-1 drop in points: a few per-seed standard deviations, never below the floor."""
    return TOLERANCE_FLOOR if std is None else max(TOLERANCE_SIGMAS * std, TOLERANCE_FLOOR)


def summary_key(s: MethodSummary) -> tuple[str, str, str, str]:
    return (s.method, s.dataset, s.backbone, s.recipe)


def describe_key(key: tuple[str, str, str, str]) -> str:
    method, dataset, backbone, recipe = key
    return f"{method} on {dataset} ({backbone}, recipe {recipe})"


def derive_baselines(summaries: Sequence[MethodSummary]) -> list[Baseline]:
    baselines = [
        Baseline(method=s.method, dataset=s.dataset, backbone=s.backbone, recipe=s.recipe, n=s.n,
                 top1_mean=round(s.top1_mean, 4),
                 top1_std=None if s.top1_std is None else round(s.top1_std, 4),
                 top1_tolerance=round(tolerance(s.top1_std), 4), params_trainable=s.params_trainable,
                 gflops_per_view=s.gflops_per_view, views=s.views)
        for s in summaries
    ]
    return sorted(baselines, key=lambda b: b.key)


def baselines_json(baselines: Sequence[Baseline]) -> str:
    data = {"tolerance_rule": TOLERANCE_RULE,
            "baselines": [dataclasses.asdict(b) for b in sorted(baselines, key=lambda b: b.key)]}
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


def write_baselines(path: Path | str, baselines: Sequence[Baseline]) -> Path:
    return atomic_write(path, baselines_json(baselines))


_BASELINE_TYPES: dict[str, tuple[type, ...]] = {
    "method": (str,), "dataset": (str,), "backbone": (str,), "recipe": (str,), "n": (int,),
    "top1_mean": (float, int), "top1_std": (float, int, type(None)), "top1_tolerance": (float, int),
    "params_trainable": (int,), "gflops_per_view": (float, int), "views": (int,),
}


def load_baselines(path: Path | str) -> list[Baseline]:
    path = Path(path)
    if not path.is_file():
        raise BaselineError(path, "file", "not found; derive it from trusted records with "
                            "`python -m bench.check --write-baselines` or pass --baselines FILE")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise BaselineError(path, "<json>", f"not valid JSON (line {e.lineno}: {e.msg})") from e
    if not isinstance(data, dict) or not isinstance(data.get("baselines"), list):
        raise BaselineError(path, "baselines", "expected an object with a 'baselines' list")
    baselines = []
    for i, entry in enumerate(data["baselines"]):
        where = f"baselines[{i}]"
        if not isinstance(entry, dict):
            raise BaselineError(path, where, "expected an object")
        for name, types in _BASELINE_TYPES.items():
            if name not in entry:
                raise BaselineError(path, f"{where} field '{name}'", "is missing")
            value = entry[name]
            if isinstance(value, bool) or not isinstance(value, types):
                raise BaselineError(path, f"{where} field '{name}'",
                                    f"expected {' or '.join(t.__name__ for t in types)}, got {value!r}")
        unknown = sorted(set(entry) - set(_BASELINE_TYPES))
        if unknown:
            raise BaselineError(path, f"{where} field '{unknown[0]}'", "is not part of the baseline schema")
        if entry["top1_tolerance"] < 0:
            raise BaselineError(path, f"{where} field 'top1_tolerance'", "must be >= 0")
        baselines.append(Baseline(**entry))
    return baselines
