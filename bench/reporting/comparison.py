"""Two result folders side by side (two copies of a validation set, two environments, two code
versions): per configuration, the difference in top-1 on the videos both evaluated, paired by video
and seed (``stats.paired_bootstrap``), and how many videos each has that the other lacks.

Videos are matched by id (``DatasetIndex.video_ids``), so copies laid out or encoded differently still
pair. A video counts as shared when both folders list it once and neither had to replace it (a broken
video's row holds another video's prediction). A configuration that cannot be paired, because a side
has no per-video outputs, no seed was run in both, or no video is shared, is refused rather than
compared unpaired.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from tabulate import tabulate

from bench.reporting.stats import PairedDifference, paired_difference
from bench.reporting.summary import MethodSummary, summarize
from bench.reporting.uncertainty import NO_OUTPUTS, seed_predictions
from bench.store.predictions import Predictions
from bench.store.records import RunRecord, load_records

Key = tuple[str, str, str, str]  # dataset, backbone, recipe, method label


@dataclass(frozen=True)
class Compared:
    key: Key
    seeds: tuple[int, ...]
    shared: int
    only_a: int
    only_b: int
    same_list: bool  # identical validation lists (ids, order and labels)
    same_config: bool  # identical config hashes on every compared seed
    top1_a: float  # on the shared videos and compared seeds
    top1_b: float
    result: PairedDifference  # B minus A


@dataclass(frozen=True)
class Comparison:
    compared: list[Compared]
    refused: list[tuple[Key, str]]
    only_in_a: list[Key]
    only_in_b: list[Key]


@dataclass(frozen=True)
class _Side:
    summary: MethodSummary
    records: dict[int, RunRecord]  # by seed
    predictions: dict[int, Predictions]  # by seed, the seeds that have per-video outputs


def _sides(folder: Path) -> dict[Key, _Side]:
    records = load_records(folder)
    by_name = {r.file_name: r for r in records}
    sides = {}
    for s in summarize(records, folder):
        sides[(s.dataset, s.backbone, s.recipe, s.method)] = _Side(
            s, {seed: by_name[name] for seed, name in zip(s.seeds, s.files)}, seed_predictions(s, by_name, folder))
    return sides


def _usable(predictions: Sequence[Predictions]) -> dict[str, int]:
    """id -> row of the videos listed once and evaluated as themselves in every seed of one side."""
    first = predictions[0]
    ids = first.video_ids.tolist()
    counts: dict[str, int] = {}
    for i in ids:
        counts[i] = counts.get(i, 0) + 1
    replaced = np.any([p.replaced for p in predictions], axis=0)
    return {i: row for row, i in enumerate(ids) if counts[i] == 1 and not replaced[row]}


def _compare(key: Key, a: _Side, b: _Side) -> Compared | str:
    """The paired comparison of one configuration, or why there is none."""
    if not a.predictions or not b.predictions:
        return f"{NO_OUTPUTS} in {'A' if not a.predictions else 'B'} (records written before schema 2)"
    seeds = tuple(sorted(set(a.predictions) & set(b.predictions)))
    if not seeds:
        return (f"no seed has per-video outputs in both (A: {sorted(a.predictions)}, B: {sorted(b.predictions)}); "
                "pairing needs the same seeds")
    pa, pb = [a.predictions[s] for s in seeds], [b.predictions[s] for s in seeds]
    ids_a, ids_b = set(pa[0].video_ids.tolist()), set(pb[0].video_ids.tolist())
    usable_a, usable_b = _usable(pa), _usable(pb)
    shared = sorted(set(usable_a) & set(usable_b))
    same_list = pa[0].list_sha256() == pb[0].list_sha256()
    if not shared:
        return (f"unpaired: the validation lists differ ({pa[0].list_sha256()[:12]} vs {pb[0].list_sha256()[:12]}) "
                f"and share no usable video (A has {len(ids_a)}, B {len(ids_b)}, {len(ids_a & ids_b)} ids in "
                "common); a comparison of different videos would measure the videos, not the runs")
    rows_a = np.array([usable_a[i] for i in shared])
    rows_b = np.array([usable_b[i] for i in shared])
    correct_a = np.stack([p.top1_correct[rows_a] for p in pa])
    correct_b = np.stack([p.top1_correct[rows_b] for p in pb])
    return Compared(key=key, seeds=seeds, shared=len(shared), only_a=len(ids_a - ids_b), only_b=len(ids_b - ids_a),
                    same_list=same_list,
                    same_config=all(a.records[s].config_hash == b.records[s].config_hash for s in seeds),
                    top1_a=100.0 * correct_a.mean(), top1_b=100.0 * correct_b.mean(),
                    result=paired_difference(correct_b, correct_a))


def compare_folders(a: Path | str, b: Path | str) -> Comparison:
    """Every configuration of A and B, compared where both have it."""
    sides_a, sides_b = _sides(Path(a)), _sides(Path(b))
    compared, refused = [], []
    for key in sorted(set(sides_a) & set(sides_b)):
        outcome = _compare(key, sides_a[key], sides_b[key])
        if isinstance(outcome, str):
            refused.append((key, outcome))
        else:
            compared.append(outcome)
    return Comparison(compared=compared, refused=refused, only_in_a=sorted(set(sides_a) - set(sides_b)),
                      only_in_b=sorted(set(sides_b) - set(sides_a)))


def describe(key: Key) -> str:
    dataset, backbone, recipe, method = key
    return f"{method} on {dataset} · {backbone} · recipe {recipe}"


_HEADERS = ("dataset · backbone · recipe", "method", "seeds", "shared videos", "only in A", "only in B",
            "same list", "same config", "top-1 A (%)", "top-1 B (%)", "Δ B − A (points)", "95% CI", "p",
            "distinguishable at 5%")


def render_comparison(comparison: Comparison, a: Path | str, b: Path | str) -> str:
    """A Markdown report of a comparison that refused nothing."""
    rows = []
    for c in comparison.compared:
        r = c.result
        dataset, backbone, recipe, method = c.key
        rows.append((f"{dataset} · {backbone} · {recipe}", method, " ".join(map(str, c.seeds)), str(c.shared),
                     str(c.only_a), str(c.only_b), "yes" if c.same_list else "no", "yes" if c.same_config else "no",
                     f"{c.top1_a:.2f}", f"{c.top1_b:.2f}", f"{r.difference:+.2f}",
                     f"[{r.interval.low:+.2f}, {r.interval.high:+.2f}]",
                     "< 0.001" if r.p_value < 0.001 else f"{r.p_value:.3f}", "yes" if r.distinguishable else "no"))
    lines = [f"A: {a}", f"B: {b}", "",
             "Top-1 on the videos both evaluated (listed once, not replaced as broken), B minus A, paired by video "
             "and seed (paired bootstrap, 95% interval, two-sided p).", "",
             tabulate(rows, headers=_HEADERS, tablefmt="pipe", disable_numparse=True,
                      colalign=("left", "left") + ("right",) * 12)]
    for side, keys in (("A", comparison.only_in_a), ("B", comparison.only_in_b)):
        if keys:
            lines += ["", f"Only in {side} (not compared): " + "; ".join(describe(k) for k in keys)]
    return "\n".join(lines) + "\n"
