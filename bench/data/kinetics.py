"""Kinetics-400 as distributed: annotation CSVs plus clip folders, nested by label or flat."""
from __future__ import annotations

import csv
from pathlib import Path

from .listfile import AnnotationError, DatasetIndex, VideoEntry
from .roots import DatasetRootError, index_videos_by_stem, resolve_root

K400_LAYOUT = """\
<root>/train.csv, <root>/validate.csv or val.csv   (also accepted under <root>/annotations/)
    header: label,youtube_id,time_start,time_end,split
<root>/train/<label>/<youtube_id>_<time_start:06d>_<time_end:06d>.mp4   (nested), or
<root>/train/<youtube_id>_<time_start:06d>_<time_end:06d>.mp4           (flat)
<root>/val/... (or validate/, valid/)                                     same for validation"""
CSV_NAMES = {"train": ("train.csv",), "val": ("validate.csv", "val.csv")}
VIDEO_DIRS = {"train": ("train",), "val": ("val", "validate", "valid", "validation")}
REQUIRED_COLUMNS = ("label", "youtube_id", "time_start", "time_end")


def clip_stem(youtube_id: str, time_start: str, time_end: str) -> str:
    return f"{youtube_id}_{int(float(time_start)):06d}_{int(float(time_end)):06d}"


def read_kinetics(split: str, root: str | Path | None) -> DatasetIndex:
    """Clips of ``split`` in CSV order; class index = position of the label in the sorted train labels."""
    found = resolve_root("k400", root, K400_LAYOUT)
    base = found.path
    if split not in CSV_NAMES:
        raise ValueError(f"split must be one of {tuple(CSV_NAMES)}, got {split!r}")

    def fail(problem: str) -> DatasetRootError:
        return DatasetRootError("k400", base, problem, K400_LAYOUT, found.source)

    csv_path = _find_first(base, CSV_NAMES[split])
    if csv_path is None:
        raise fail(f"no {' or '.join(CSV_NAMES[split])} (looked in the root and root/annotations)")
    rows = _read_rows(csv_path, fail)
    train_csv = _find_first(base, CSV_NAMES["train"])
    class_rows = rows if train_csv is None or train_csv == csv_path else _read_rows(train_csv, fail)
    class_names = sorted({row["label"] for row in class_rows})
    class_index = {name: i for i, name in enumerate(class_names)}
    unknown = sorted({row["label"] for row in rows} - set(class_index))
    if unknown:
        raise fail(f"{csv_path.name} has labels absent from {train_csv}: {unknown[:5]}")

    video_dir = next((base / name for name in VIDEO_DIRS[split] if (base / name).is_dir()), None)
    if video_dir is None:
        raise fail(f"no video folder for split '{split}' (tried {', '.join(VIDEO_DIRS[split])})")
    by_stem = index_videos_by_stem(video_dir)
    entries, missing, ids = [], [], []
    for row in rows:
        stem = clip_stem(row["youtube_id"], row["time_start"], row["time_end"])
        ids.append(stem)
        path = by_stem.get(stem) or by_stem.get(row["youtube_id"])
        if path is None:
            path = video_dir / row["label"] / f"{stem}.mp4"
            missing.append(path)
        entries.append(VideoEntry(path, class_index[row["label"]]))
    return DatasetIndex(entries, class_names, base, csv_path, missing, ids)


def _find_first(base: Path, names: tuple[str, ...]) -> Path | None:
    for folder in (base, base / "annotations"):
        for name in names:
            if (folder / name).is_file():
                return folder / name
    return None


ROW_FIX = "each row needs label,youtube_id,time_start,time_end (times in seconds); fix or delete the row"


def _read_rows(path: Path, fail) -> list[dict[str, str]]:
    """The rows, each checked: a short row, an empty field or a time that is not a number names its
    line (real copies carry hand-edited CSVs)."""
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        absent = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
        if absent:
            raise fail(f"{path} lacks column(s) {absent}; header is {reader.fieldnames}")
        rows = []
        for row in reader:
            empty = [c for c in REQUIRED_COLUMNS if not (row.get(c) or "").strip()]
            if empty:
                raise AnnotationError(path, reader.line_num, f"field(s) {empty} missing or empty", ROW_FIX)
            for column in ("time_start", "time_end"):
                try:
                    float(row[column])
                except ValueError:
                    raise AnnotationError(path, reader.line_num, f"{column} {row[column]!r} is not a number",
                                          ROW_FIX) from None
            rows.append(row)
        return rows
