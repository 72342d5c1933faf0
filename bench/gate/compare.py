"""Fresh records against baselines: the regression rules of the gate, in two modes.

* **exact** (the fresh records ran under the baselines' environment fingerprint): a run of one config is
  bit-identical on one environment, so every number of every seed must equal its baseline seed's.
  Any moved number fails, so a change of the numbers is always deliberate.
* **statistical** (another fingerprint: another torch, CPU or thread count): the mean top-1 over the
  fresh seeds may fall at most ``K_SIGMAS`` standard errors below the baseline mean, with the spread
  calibrated on a measured environment change (bench.gate.baselines).

In both modes the deterministic facts must hold: trainable parameters and test views exactly,
GFLOPs within 0.5%, the code's probes (bench.gate.probes) within their tolerances, and on
synth_motion every order-aware method above every order-blind one.
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Callable, Sequence

from bench.gate.baselines import (
    GFLOPS_RELATIVE_TOLERANCE,
    K_SIGMAS,
    Baseline,
    BaselineSet,
    Key,
    SeedResult,
    describe_key,
    group,
    standard_error,
)
from bench.gate.probes import ModelProbes, data_differences, data_key, model_differences
from bench.store.records import RunRecord

MOTION_TASK = "synth_motion"


@dataclass(frozen=True)
class Row:
    """One line of the gate's table."""

    config: str
    mode: str
    fresh: str
    baseline: str
    change: str
    tolerance: str
    verdict: str  # "ok", "FAIL", "warn", "new"
    why: str


@dataclass
class GateResult:
    rows: list[Row] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def checked(self) -> int:
        return sum(row.verdict != "new" for row in self.rows)


ModelProber = Callable[[Baseline], ModelProbes]
DataProber = Callable[[Baseline], dict[str, list[float]]]
NumericsProber = Callable[[], dict]  # bench.gate.baselines.numerics_facts


def compare(records: Sequence[RunRecord], bset: BaselineSet, probe_model: ModelProber,
            probe_data: DataProber, probe_numerics: NumericsProber | None = None) -> GateResult:
    """Judge every fresh configuration; ``probe_*`` compute the current code's probes of a baseline
    (``probe_numerics`` this machine's few-step training bytes; None: not compared)."""
    result = GateResult()
    if probe_numerics is not None and bset.numerics:
        _judge_numerics(probe_numerics(), bset.numerics, result)
    baselines = bset.by_key()
    fresh = group(records)
    for key, runs in fresh.items():
        b = baselines.get(key)
        if b is None:
            mean = statistics.fmean(r.top1 for r in runs)
            result.rows.append(Row(describe_key(key), "-", f"{mean:.2f} (n={len(runs)})", "-", "-", "-", "new",
                                   "no baseline"))
            result.warnings.append(f"no baseline for {describe_key(key)}; once its numbers are trusted, add it "
                                   "with `python -m bench.check --write-baselines`")
            continue
        _judge_accuracy(key, runs, b, bset.calibration.get("environment_sigma", 0.0), result)
        _judge_invariants(key, runs, b, probe_model(b), result)
    checked_data = set()
    for b in bset.baselines:
        key = data_key(b.run_config)
        if b.key in fresh and key in bset.data_probes and key not in checked_data:
            checked_data.add(key)
            result.failures += [f"{key}: {problem}" for problem in data_differences(probe_data(b), bset.data_probes[key])]
    result.failures += _order_invariant(fresh, baselines)
    unrun = sorted(set(baselines) - set(fresh))
    if unrun:
        result.notes.append(f"{len(unrun)} baseline(s) had no fresh records: " + "; ".join(map(describe_key, unrun)))
    return result


def _judge_numerics(here: dict, there: dict, result: GateResult) -> None:
    """Under the baselines' fingerprint (same lock and numerics profile, any CPU), a few training steps of
    every method must give the bytes they gave there; otherwise every exact row would fail for the
    machine, not for the code, and this says so first."""
    if here["fingerprint"] != there["fingerprint"]:
        result.notes.append("numerics probe not compared: this process's fingerprint differs from the "
                            "baselines' (another lock, profile or thread count)")
        return
    moved = sorted(m for m, d in there["digests"].items() if here["digests"].get(m) != d)
    if moved:
        result.failures.append(
            f"the numerics profile does not hold on this machine: a few training steps of {', '.join(moved)} "
            "give other bytes than where the baselines were made, under the same lock and profile "
            "(python -m bench.gate.numerics_probe); exact rows then fail for the CPU, not for the code. "
            "Run with BENCH_NUMERICS=native for the statistical mode, and report the machine")


def same_fingerprint(runs: Sequence[RunRecord], seeds: Sequence[SeedResult]) -> bool:
    prints = {r.fingerprint.get("digest") for r in runs} | {s.fingerprint for s in seeds}
    return len(prints) == 1 and None not in prints


def _judge_accuracy(key: Key, runs: list[RunRecord], b: Baseline, environment_sigma: float,
                    result: GateResult) -> None:
    name = describe_key(key)
    by_seed = {s.seed: s for s in b.seeds}
    paired = [(r, by_seed[r.seed]) for r in runs if r.seed in by_seed]
    mean = statistics.fmean(r.top1 for r in runs)
    fresh_text, base_text = f"{mean:.2f} (n={len(runs)})", f"{b.top1_mean:.2f} (n={b.n})"
    if paired and same_fingerprint(runs, b.seeds):
        moved = [f"seed {r.seed}: {change}" for r, s in paired for change in s.moved(SeedResult.of(r))]
        change = f"{mean - statistics.fmean(s.top1 for _, s in paired):+.2f}"
        verdict = "FAIL" if moved else "ok"
        why = f"same fingerprint, {len(paired)} seed(s) compared bit for bit"
        result.rows.append(Row(name, "exact", fresh_text, base_text, change, "0", verdict, why))
        if moved:
            result.failures.append(f"numbers moved under the same fingerprint: {name}: " + "; ".join(moved)
                                   + ". If the change is intended, refresh the baselines")
        return
    tolerance = K_SIGMAS * standard_error(b.sigma, len(runs), b.n, environment_sigma)
    delta = mean - b.top1_mean
    verdict = "FAIL" if delta < -tolerance else "warn" if delta > tolerance else "ok"
    why = (f"fingerprint differs: {K_SIGMAS:g} x sqrt({b.sigma:.2f}^2 (1/{len(runs)} + 1/{b.n}) + "
           f"{environment_sigma:.2f}^2)")
    result.rows.append(Row(name, "statistical", fresh_text, base_text, f"{delta:+.2f}", f"{tolerance:.2f}",
                           verdict, why))
    if verdict == "FAIL":
        result.failures.append(f"top-1 regressed: {name}: {mean:.2f} (mean of n={len(runs)}) vs baseline "
                               f"{b.top1_mean:.2f} (n={b.n}): {delta:+.2f} points, tolerance {tolerance:.2f}")
    elif verdict == "warn":
        result.warnings.append(f"top-1 above baseline: {name}: {delta:+.2f} points (tolerance {tolerance:.2f}); "
                               "if intended, refresh the baselines")


def _judge_invariants(key: Key, runs: list[RunRecord], b: Baseline, probes: ModelProbes,
                      result: GateResult) -> None:
    name = describe_key(key)
    first = runs[0]
    if first.params_trainable != b.params_trainable:
        result.failures.append(f"trainable parameters changed: {name}: {first.params_trainable:,} vs baseline "
                               f"{b.params_trainable:,} ({first.params_trainable - b.params_trainable:+,})")
    if first.views != b.views:
        result.failures.append(f"test views changed: {name}: {first.views} vs baseline {b.views}")
    if _gflops_moved(first.gflops_per_view, b.gflops_per_view):
        change = f"{100 * (first.gflops_per_view / b.gflops_per_view - 1):+.2f}%" if b.gflops_per_view else "from 0"
        result.failures.append(f"GFLOPs per view changed: {name}: {first.gflops_per_view:g} vs baseline "
                               f"{b.gflops_per_view:g} ({change}, limit {100 * GFLOPS_RELATIVE_TOLERANCE:g}%)")
    result.failures += [f"{name}: {problem}" for problem in model_differences(probes, b.probes)]


def _gflops_moved(fresh: float, baseline: float) -> bool:
    if baseline == 0:
        return fresh != 0
    return abs(fresh - baseline) > GFLOPS_RELATIVE_TOLERANCE * abs(baseline)


def _order_invariant(fresh: dict[Key, list[RunRecord]], baselines: dict[Key, Baseline]) -> list[str]:
    """On the motion task, whose classes are time-reversed pairs, a method that sees frame order must
    beat every method that cannot (their frame sets are identically distributed within a pair)."""
    means = {k: statistics.fmean(r.top1 for r in runs) for k, runs in fresh.items()
             if k[1] == MOTION_TASK and k in baselines}
    aware = {k: m for k, m in means.items() if baselines[k].probes.order_aware}
    blind = {k: m for k, m in means.items() if not baselines[k].probes.order_aware}
    if not aware or not blind:
        return []
    best_blind = max(blind, key=blind.get)
    return [f"order invariant broken on {MOTION_TASK}: order-aware {describe_key(k)} ({m:.2f}) is not above "
            f"order-blind {describe_key(best_blind)} ({blind[best_blind]:.2f})"
            for k, m in sorted(aware.items()) if m <= blind[best_blind]]
