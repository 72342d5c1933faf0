"""From a planned grid to its tuning trials, and from a sweep's chosen point to the final runs.

Every configuration of the grid (a method with its options on a dataset) gets the same trials: one
per grid point of the requested knobs (their product, when several are tuned together) and per trial
seed. A trial is the configuration it would select, at that point, trained on the training list
minus the held-out split and scored on the split (``RunConfig.trial``). The chosen point then runs
as an ordinary configuration with the grid's seeds: at the declared point that is the very run the
grid has without ``--tune``; elsewhere a configuration of its own, named by what it changes
(``RunConfig.tuned`` for the recipe's lr and weight decay, the method options for an option).
"""
from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass
from typing import Sequence

from bench.config import BenchInputError, RunConfig
from bench.data.holdout import HoldoutError, HoldoutSpec
from bench.tuning.spec import HALF_DECADE, RECIPE_KNOBS, KnobPoint, TrialSpec, TuningError, grid_values


@dataclass(frozen=True)
class TuneRequest:
    """What ``--tune`` asks for: which knobs, how many grid points each, the trial seeds, the split."""

    knobs: tuple[str, ...]
    points: int
    seeds: tuple[int, ...]
    holdout: HoldoutSpec


def parse_request(knobs: str, points: int, seeds: Sequence[int], fraction: float) -> TuneRequest:
    """Validated early: a bad request is an input error before anything runs."""
    names = tuple(dict.fromkeys(k.strip() for k in knobs.split(",") if k.strip()))
    if not names:
        raise BenchInputError("--tune is empty; name the knobs to tune, e.g. --tune lr (or lr,wd, or an "
                              "option the methods declare tunable, e.g. width)")
    try:
        grid_values(1.0, HALF_DECADE, points)
        holdout = HoldoutSpec(fraction=fraction)
    except (TuningError, HoldoutError) as err:
        raise BenchInputError(str(err)) from None
    return TuneRequest(names, points, tuple(seeds), holdout)


def check_knobs(methods: Sequence[str], request: TuneRequest) -> None:
    """Every method of the grid must have every knob, so that every method gets the same trials."""
    from methods import get_method
    for knob in request.knobs:
        if knob in RECIPE_KNOBS:
            continue
        lacking = [m for m in methods if knob not in get_method(m).tunable]
        if lacking:
            declared = {m: sorted(get_method(m).tunable) for m in methods if get_method(m).tunable}
            raise BenchInputError(
                f"--tune {knob}: {lacking} declare no tunable option {knob!r}; every method of the grid gets the "
                f"same trials, so limit --methods to methods that declare it (tunable: {', '.join(RECIPE_KNOBS)} "
                f"for every method; options: {declared or 'none declared'})")


def declared_value(cfg: RunConfig, knob: str) -> tuple[float | int, float, bool]:
    """(declared value, grid ratio, integer) of ``knob`` for the configuration ``cfg``."""
    if knob in RECIPE_KNOBS:
        return getattr(cfg.recipe, RECIPE_KNOBS[knob]), HALF_DECADE, False
    from methods import get_method, make_method_config
    value = getattr(make_method_config(cfg.method, **dict(cfg.method_options)), knob)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise BenchInputError(f"--tune {knob}: {cfg.method} runs with {knob}={value!r}; a log-spaced grid "
                              f"needs a positive number (set one with --method-option {cfg.method}.{knob}=N)")
    return value, get_method(cfg.method).tunable[knob], isinstance(value, int)


def grid_points(cfg: RunConfig, request: TuneRequest) -> list[tuple[KnobPoint, ...]]:
    """Every point of ``cfg``'s grid, the knobs in request order."""
    axes = []
    for knob in request.knobs:
        declared, ratio, integer = declared_value(cfg, knob)
        try:
            values = grid_values(declared, ratio, request.points, integer)
        except TuningError as err:
            raise BenchInputError(f"--tune {knob} for {cfg.method}: {err}") from None
        axes.append([KnobPoint(knob, value, declared, step) for step, value in values])
    return list(itertools.product(*axes))


def at_point(cfg: RunConfig, point: Sequence[KnobPoint]) -> RunConfig:
    """``cfg`` with the knobs at ``point``; unchanged where every knob is at its declared value."""
    tuned, options = {}, dict(cfg.method_options)
    for p in point:
        if p.step == 0:
            continue
        if p.knob in RECIPE_KNOBS:
            tuned[RECIPE_KNOBS[p.knob]] = p.value
        else:
            options[p.knob] = p.value
    if not tuned and options == dict(cfg.method_options):
        return cfg
    return dataclasses.replace(cfg, tuned=tuned or None, method_options=options)


def configurations(runs: Sequence[RunConfig]) -> dict[str, RunConfig]:
    """The grid's configurations (its runs without the seed), by the identity of their seed-0 run."""
    found: dict[str, RunConfig] = {}
    for cfg in runs:
        found.setdefault(dataclasses.replace(cfg, seed=0).hash(), cfg)
    return found


def plan_trials(runs: Sequence[RunConfig], request: TuneRequest) -> dict[str, list[RunConfig]]:
    """The trials of every configuration of ``runs``, keyed as ``configurations`` keys them; each
    trial's options are checked here, so an impossible grid point fails before anything runs."""
    from methods import get_backbone_config, make_method_config
    check_knobs(sorted({cfg.method for cfg in runs}), request)
    trials = {}
    for key, cfg in configurations(runs).items():
        trials[key] = []
        for point in grid_points(cfg, request):
            final = at_point(cfg, point)
            make_method_config(final.method, **dict(final.method_options)).check_backbone(
                get_backbone_config(final.backbone))
            trial = TrialSpec(request.holdout, tuple(point))
            trials[key] += [dataclasses.replace(final, seed=seed, trial=trial) for seed in request.seeds]
    return trials


def final_runs(runs: Sequence[RunConfig], chosen: dict[str, Sequence[KnobPoint]]) -> list[RunConfig]:
    """The grid's runs (every seed) at the point chosen for their configuration."""
    return [at_point(cfg, chosen[dataclasses.replace(cfg, seed=0).hash()]) for cfg in runs]
