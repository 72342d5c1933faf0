"""Training curves as a record carries them: a few columns of numbers, one entry per point.

``train`` has one point per logging interval (every ``log_every`` optimizer steps and at the end of
each epoch): the mean training loss over the interval's steps and all ranks, the learning rate of its
last step, and the training throughput over the interval. ``eval`` has one point per evaluation:
top-1 and top-5 (%). Steps count optimizer steps from the start of the run; ``steps_per_epoch`` turns
them into epochs. A run logs a few dozen points, so the curves fit in the record itself.
"""
from __future__ import annotations

from typing import Any

TRAIN_COLUMNS = ("step", "loss", "lr", "clips_per_s")


EVAL_COLUMNS = ("step", "top1", "top5")


def empty_curves(log_every: int, steps_per_epoch: int) -> dict[str, Any]:
    return {"log_every": log_every, "steps_per_epoch": steps_per_epoch,
            "train": {c: [] for c in TRAIN_COLUMNS}, "eval": {c: [] for c in EVAL_COLUMNS}}


def append_point(curves: dict[str, Any], part: str, **values: float) -> None:
    """Add one point to ``curves[part]``; every column gets a value."""
    columns = curves[part]
    if sorted(values) != sorted(columns):
        raise ValueError(f"a {part} point needs {sorted(columns)}, got {sorted(values)}")
    for name, value in values.items():
        columns[name].append(int(value) if name == "step" else float(f"{value:.6g}"))


def curves_problem(data: Any) -> str | None:
    """What is wrong with a record's ``curves`` value, or None when it follows the format above."""
    expected = {"log_every", "steps_per_epoch", "train", "eval"}
    if not isinstance(data, dict) or set(data) != expected:
        return f"expected an object with keys {sorted(expected)}"
    for key in ("log_every", "steps_per_epoch"):
        if not isinstance(data[key], int) or isinstance(data[key], bool) or data[key] < 1:
            return f"'{key}' must be a positive integer, got {data[key]!r}"
    for part, columns in (("train", TRAIN_COLUMNS), ("eval", EVAL_COLUMNS)):
        table = data[part]
        if not isinstance(table, dict) or set(table) != set(columns):
            return f"'{part}' must have the columns {list(columns)}"
        lengths = {len(v) if isinstance(v, list) else -1 for v in table.values()}
        if len(lengths) != 1 or -1 in lengths:
            return f"'{part}' columns must be lists of one length"
        for name, values in table.items():
            if any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in values):
                return f"'{part}.{name}' must hold numbers only"
        if table["step"] != sorted(table["step"]):
            return f"'{part}.step' must increase"
    return None
