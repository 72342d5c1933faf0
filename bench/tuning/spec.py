"""What a tuning trial is: the knobs it sets, the grid they come from, and the held-out split.

A knob is a recipe field (``lr``: the base learning rate, ``wd``: the weight decay) or a numeric
option a method declares tunable (``methods.register_method(tunable=...)``). Its grid is
``points`` values log-spaced around the declared one: ``declared * ratio**step`` for step in
``-(points // 2) .. points // 2``, rounded to two significant digits (so recipes and records hold
short decimals and a re-centred grid shares its points; an integer option's to integers) except the
declared value itself, which is kept exactly. The recipe knobs step by half a decade (ratio
sqrt(10)); an option steps by the ratio its method declares.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

from bench.data.holdout import HoldoutSpec

RECIPE_KNOBS = {"lr": "base_lr", "wd": "weight_decay"}  # knob -> RecipeConfig field
HALF_DECADE = math.sqrt(10.0)
DEFAULT_POINTS = 5
DEFAULT_TRIAL_SEEDS = 2
DEFAULT_HOLDOUT = 0.1  # of the training list


class TuningError(ValueError):
    """A tuning request that cannot be honoured; the message names the fix."""


def round_2g(value: float) -> float:
    return float(f"{value:.2g}")


def grid_values(declared: float, ratio: float, points: int, integer: bool = False) -> list[tuple[int, float | int]]:
    """(step, value) of the grid around ``declared``, steps from -(points // 2) to points // 2."""
    if points < 3 or points % 2 == 0:
        raise TuningError(f"--tune-points {points}: need an odd number >= 3, so the grid is centred "
                          "on the declared value")
    if not (declared > 0 and math.isfinite(declared)):
        raise TuningError(f"a log-spaced grid needs a positive declared value, got {declared!r}")
    half = points // 2
    grid = []
    for step in range(-half, half + 1):
        exact = declared * ratio ** step
        grid.append((step, declared if step == 0 else int(round(exact)) if integer else round_2g(exact)))
    values = [v for _, v in grid]
    if len(set(values)) != len(values) or min(values) <= 0:
        raise TuningError(f"the grid {values} around {declared!r} (ratio {ratio:g}) has repeated or "
                          "non-positive values; use fewer --tune-points or a larger ratio")
    return grid


@dataclass(frozen=True)
class KnobPoint:
    """One knob's value in a trial, with the declared value it was tuned around."""

    knob: str  # "lr", "wd" or a method option's name
    value: float | int
    declared: float | int
    step: int  # grid steps from the declared value (0: the declared value)

    def to_dict(self) -> dict[str, Any]:
        return {"knob": self.knob, "value": self.value, "declared": self.declared, "step": self.step}


@dataclass(frozen=True)
class TrialSpec:
    """A tuning trial: the run trains on the training list minus ``holdout`` and is scored on the
    held-out part, at the knob values of ``point``. Part of the run's identity."""

    holdout: HoldoutSpec
    point: tuple[KnobPoint, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"holdout": {"fraction": self.holdout.fraction, "rule": self.holdout.rule},
                "point": [p.to_dict() for p in self.point]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "TrialSpec":
        return cls(HoldoutSpec(**data["holdout"]), tuple(KnobPoint(**p) for p in data["point"]))
