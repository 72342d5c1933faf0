"""The regression gate: fresh run records against committed baselines, committed tables against their records.

``python -m bench.check`` fails (exit 1) when

- a configuration's mean top-1 over its fresh seeds fell below its baseline by more than the
  baseline's tolerance, ``max(TOLERANCE_SIGMAS x seed std, TOLERANCE_FLOOR)`` top-1 points. The
  per-seed spread (not the spread of the mean) is used so that even a single fresh seed is judged
  fairly; the floor keeps a few nearly identical seeds from making the gate fire on noise;
- its trainable parameter count or number of test views changed at all, or its GFLOPs per view moved
  by more than 0.5%: these are deterministic, so any change is a change of the model or protocol;
- a committed table (``README.md``, ``tables/*``) differs from what ``bench.report`` generates from
  the committed records, or a table or plot is missing, or a file under ``tables/`` is not
  generated from the records. Plots are checked for presence only: their pixels depend on the
  matplotlib and FreeType versions, not only on the records.

A fresh configuration with no baseline is a warning, not a failure: adding a method, dataset or
backbone must not need the gate's permission, and the committed tables (which are checked) already
show the new rows. Accuracy above the baseline by more than the tolerance is a warning too: it is no
regression, but it means the baselines are stale. Input errors (malformed records or baselines) exit 2.
"""
from __future__ import annotations

import argparse
import dataclasses
import difflib
import json
import os
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from bench.records import RecordError, load_records
from bench.report import (
    ACCURACY_PLOT, DATASETS_PLOT, DEFAULT_REFERENCE, DEFAULT_RESULTS, FILE_MODE, PLOTS_SUBDIR,
    TABLES_SUBDIR, MethodSummary, ReportError, load_reference, render_tables, summarize,
)

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


def _key(s: MethodSummary) -> tuple[str, str, str, str]:
    return (s.method, s.dataset, s.backbone, s.recipe)


def _describe(key: tuple[str, str, str, str]) -> str:
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
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(baselines_json(baselines))
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


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
        key = _key(s)
        fresh_keys.add(key)
        name = _describe(key)
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
                            + "; ".join(_describe(k) for k in unrun))
    return result


def _gflops_moved(fresh: float, baseline: float) -> bool:
    if baseline == 0:
        return fresh != 0
    return abs(fresh - baseline) > GFLOPS_RELATIVE_TOLERANCE * abs(baseline)


def check_tables(committed_dir: Path | str, reference: Path | str = DEFAULT_REFERENCE) -> list[str]:
    """Problems with the committed tables: each differing file with a unified diff, missing or stray files."""
    committed_dir = Path(committed_dir)
    summaries = summarize(load_records(committed_dir), committed_dir)
    expected = render_tables(summaries, load_reference(reference))
    regenerate = f"regenerate with `python -m bench.report --results {committed_dir}`"
    problems = []
    for rel, text in sorted(expected.items()):
        path = committed_dir / rel
        if not path.is_file():
            problems.append(f"{path} is missing; {regenerate}")
            continue
        actual = path.read_text(encoding="utf-8")
        if actual != text:
            diff = "".join(difflib.unified_diff(
                actual.splitlines(keepends=True), text.splitlines(keepends=True),
                fromfile=f"{path} (committed)", tofile=f"{path} (generated from the records)"))
            problems.append(f"{path} differs from what the records generate (edited by hand, or "
                            f"records changed without a report); {regenerate}\n{diff}")
    tables_dir = committed_dir / TABLES_SUBDIR
    stray = sorted(p for p in tables_dir.glob("*") if p.is_file()
                   and p.relative_to(committed_dir).as_posix() not in expected) if tables_dir.is_dir() else []
    problems += [f"{p} is not generated from the records (stale or hand-written); delete it and "
                 f"{regenerate}" for p in stray]
    if summaries:
        for name in (ACCURACY_PLOT, DATASETS_PLOT):
            for ext in ("png", "pdf"):
                path = committed_dir / PLOTS_SUBDIR / f"{name}.{ext}"
                if not path.is_file() or path.stat().st_size == 0:
                    problems.append(f"{path} is missing or empty; {regenerate}")
    return problems


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.check",
        description="Regression gate. (1) Compares the records in RESULTS/runs against the baselines "
                    "file: per (method, dataset, backbone, recipe), the mean top-1 over fresh seeds may "
                    f"drop by at most the baseline's tolerance, max({TOLERANCE_SIGMAS:g} x per-seed std, "
                    f"{TOLERANCE_FLOOR:g}) top-1 points; trainable parameters and test views must match exactly "
                    f"and GFLOPs per view within {100 * GFLOPS_RELATIVE_TOLERANCE:g}%. A configuration "
                    "without a baseline is a warning. (2) Regenerates the tables from the records in "
                    "COMMITTED/runs and fails on any difference from COMMITTED/README.md and "
                    "COMMITTED/tables (printing a diff), or on missing plots. Exit 0: passed; 1: a "
                    "regression or table difference; 2: malformed records or baselines.",
        epilog="After trusted runs of the default suite: `python -m bench.report && "
               "python -m bench.check --write-baselines`, then commit results/.")
    parser.add_argument("--results", type=Path, default=DEFAULT_RESULTS,
                        help="directory whose runs/*.json are the fresh records to gate (default: %(default)s)")
    parser.add_argument("--committed", type=Path, default=DEFAULT_RESULTS,
                        help="directory with the committed records, README.md and tables/ whose tables "
                             "must match their records (default: %(default)s)")
    parser.add_argument("--baselines", type=Path, default=None,
                        help=f"baselines file (default: COMMITTED/{BASELINES_NAME})")
    parser.add_argument("--reference", type=Path, default=DEFAULT_REFERENCE,
                        help="published numbers used by the tables (default: the repository's "
                             "results/reference/published.csv)")
    parser.add_argument("--write-baselines", action="store_true",
                        help="derive the baselines from the records in --results, write them to the "
                             "baselines file and exit (checks nothing)")
    return parser


def _print_section(title: str, lines: Sequence[str]) -> None:
    for line in lines:
        print(f"{title}: {line}")


def run(args: argparse.Namespace) -> int:
    baselines_path = args.baselines or args.committed / BASELINES_NAME
    summaries = summarize(load_records(args.results), args.results)
    if args.write_baselines:
        baselines = derive_baselines(summaries)
        write_baselines(baselines_path, baselines)
        single = [_describe(b.key) for b in baselines if b.n < 2]
        if single:
            print(f"warning: one seed only, tolerance is the {TOLERANCE_FLOOR:g}-point floor: " + "; ".join(single))
        print(f"wrote {len(baselines)} baselines to {baselines_path}")
        return 0

    gate = compare(summaries, load_baselines(baselines_path))
    table_problems = check_tables(args.committed, args.reference)
    _print_section("note", gate.notes)
    _print_section("warning", gate.warnings)
    _print_section("FAIL", gate.failures + table_problems)
    if gate.failures or table_problems:
        print(f"bench.check: FAILED: {len(gate.failures)} regression(s), "
              f"{len(table_problems)} table problem(s)")
        return 1
    print(f"bench.check: passed ({gate.checked} configuration(s) within their baselines; tables match "
          f"the records in {args.committed})")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except (RecordError, ReportError, BaselineError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
