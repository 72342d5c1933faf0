"""Fresh records against baselines: the regression rules of the gate."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from bench.gate.baselines import GFLOPS_RELATIVE_TOLERANCE, Baseline, describe_key, summary_key
from bench.reporting.summary import MethodSummary


@dataclass
class GateResult:
    checked: int = 0  # fresh configurations that had a baseline
    failures: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def compare(summaries: Sequence[MethodSummary], baselines: Sequence[Baseline]) -> GateResult:
    """Judge each fresh configuration against its baseline; see the module docstring for the rules."""
    result = GateResult()
    by_key = {b.key: b for b in baselines}
    fresh_keys = set()
    for s in summaries:
        key = summary_key(s)
        fresh_keys.add(key)
        name = describe_key(key)
        b = by_key.get(key)
        if b is None:
            result.warnings.append(f"no baseline for {name} (top-1 {s.top1_mean:.2f}, n={s.n}); once its "
                                   "numbers are trusted, add it with `python -m bench.check --write-baselines`")
            continue
        result.checked += 1
        delta = s.top1_mean - b.top1_mean
        if delta < -b.top1_tolerance:
            result.failures.append(
                f"top-1 regressed: {name}: {s.top1_mean:.2f} (mean of n={s.n}) vs baseline "
                f"{b.top1_mean:.2f} (n={b.n}): {delta:+.2f} points, tolerance {b.top1_tolerance:.2f}")
        elif delta > b.top1_tolerance:
            result.warnings.append(
                f"top-1 above baseline: {name}: {s.top1_mean:.2f} vs {b.top1_mean:.2f} ({delta:+.2f} "
                f"points, tolerance {b.top1_tolerance:.2f}); if intended, refresh the baselines")
        if s.params_trainable != b.params_trainable:
            result.failures.append(
                f"trainable parameters changed: {name}: {s.params_trainable:,} vs baseline "
                f"{b.params_trainable:,} ({s.params_trainable - b.params_trainable:+,})")
        if s.views != b.views:
            result.failures.append(f"test views changed: {name}: {s.views} vs baseline {b.views}")
        if _gflops_moved(s.gflops_per_view, b.gflops_per_view):
            change = (f"{100 * (s.gflops_per_view / b.gflops_per_view - 1):+.2f}%"
                      if b.gflops_per_view else "from 0")
            result.failures.append(
                f"GFLOPs per view changed: {name}: {s.gflops_per_view:g} vs baseline "
                f"{b.gflops_per_view:g} ({change}, limit {100 * GFLOPS_RELATIVE_TOLERANCE:g}%)")
    unrun = sorted(set(by_key) - fresh_keys)
    if unrun:
        result.notes.append(f"{len(unrun)} baseline(s) had no fresh records: "
                            + "; ".join(describe_key(k) for k in unrun))
    return result


def _gflops_moved(fresh: float, baseline: float) -> bool:
    if baseline == 0:
        return fresh != 0
    return abs(fresh - baseline) > GFLOPS_RELATIVE_TOLERANCE * abs(baseline)
