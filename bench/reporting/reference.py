"""Published numbers (results/reference/published.csv), validated; always shown as "reported"."""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from bench.reporting.layout import DEFAULT_REFERENCE
from bench.reporting.summary import ReportError


@dataclass(frozen=True)
class ReportedRow:
    """One published number (results/reference/published.csv); never mixed with reproduced rows."""

    method: str
    dataset: str
    backbone: str
    frames: int | None
    top1: float | None
    top5: float | None
    params_trainable_m: float | None
    gflops_per_view: float | None
    views: int | None
    train_memory_gb: float | None  # peak training memory as the paper prints it (GB)
    source: str
    reference: str
    setting: str


REFERENCE_COLUMNS = ("method", "dataset", "backbone", "frames", "top1", "top5", "params_trainable_m",
                      "gflops_per_view", "views", "train_memory_gb", "source", "reference", "setting")


_FIGURES = ("top1", "params_trainable_m", "gflops_per_view", "train_memory_gb")  # a row publishes one at least


def load_reference(path: Path | str) -> list[ReportedRow]:
    """Published numbers, validated; rows keep the file's (curated) order."""
    path = Path(path)
    if not path.is_file():
        raise ReportError(f"{path}: reference file not found; pass --reference FILE "
                          f"(the repository's is {DEFAULT_REFERENCE})")
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        if tuple(reader.fieldnames or ()) != REFERENCE_COLUMNS:
            raise ReportError(f"{path}: header must be {','.join(REFERENCE_COLUMNS)}, "
                              f"got {','.join(reader.fieldnames or ())}")
        rows = []
        for row in reader:
            where = f"{path}:{reader.line_num}"
            rows.append(ReportedRow(
                method=_required(row, "method", where), dataset=_required(row, "dataset", where),
                backbone=_required(row, "backbone", where),
                frames=_number(row, "frames", int, where),
                top1=_number(row, "top1", float, where),
                top5=_number(row, "top5", float, where),
                params_trainable_m=_number(row, "params_trainable_m", float, where),
                gflops_per_view=_number(row, "gflops_per_view", float, where),
                views=_number(row, "views", int, where),
                train_memory_gb=_number(row, "train_memory_gb", float, where),
                source=_required(row, "source", where), reference=_required(row, "reference", where),
                setting=row["setting"].strip(),
            ))
            if all(getattr(rows[-1], name) is None for name in _FIGURES):
                raise ReportError(f"{where}: the row publishes no number; give one of {', '.join(_FIGURES)}")
    return rows


def _required(row: dict[str, str], column: str, where: str) -> str:
    value = (row[column] or "").strip()
    if not value:
        raise ReportError(f"{where}: column '{column}' is empty; it is required")
    return value


def _number(row: dict[str, str], column: str, kind: Callable, where: str, required: bool = False):
    text = (row[column] or "").strip()
    if not text:
        if required:
            raise ReportError(f"{where}: column '{column}' is empty; it is required")
        return None
    try:
        return kind(text)
    except ValueError:
        raise ReportError(f"{where}: column '{column}' is {text!r}, expected {kind.__name__}") from None
