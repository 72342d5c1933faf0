"""Committed tables against what the committed records generate."""
from __future__ import annotations

import difflib
from pathlib import Path

from bench.reporting.inputs import build_report
from bench.reporting.layout import DEFAULT_REFERENCE, PLOTS_SUBDIR, TABLES_SUBDIR
from bench.reporting.plots import plot_stems
from bench.reporting.tables import render_tables


def check_tables(committed_dir: Path | str, reference: Path | str = DEFAULT_REFERENCE) -> list[str]:
    """Problems with the committed tables: each differing file with a unified diff, missing or stray files."""
    committed_dir = Path(committed_dir)
    report = build_report(committed_dir, reference)  # the committed report uses the default reference method
    expected = render_tables(report)
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
    for name in plot_stems(report):
        for ext in ("png", "pdf"):
            path = committed_dir / PLOTS_SUBDIR / f"{name}.{ext}"
            if not path.is_file() or path.stat().st_size == 0:
                problems.append(f"{path} is missing or empty; {regenerate}")
    return problems
