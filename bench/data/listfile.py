"""The video list every reader produces, and the reference code's list-file format (``path label``)."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from bench.atomic import atomic_write

from .roots import DatasetRootError, resolve_root

LIST_LAYOUT = """\
<root>/train.txt        one 'relative/path/to/video.mp4 <label>' per line (split at the LAST space)
<root>/val.txt          (or validation.txt)
<root>/classes.txt      optional: one class name per line, line i = label i"""
SPLIT_FILES = {"train": ("train.txt",), "val": ("val.txt", "validation.txt")}


class AnnotationError(ValueError):
    """A malformed line of an annotation file; the message names the file, the line and the fix."""

    def __init__(self, path: Path, line_number: int, problem: str, fix: str):
        self.path, self.line_number = Path(path), line_number
        super().__init__(f"{path}:{line_number}: {problem}; {fix}")


class ListFileError(AnnotationError):
    """A malformed line in a list file."""

    def __init__(self, path: Path, line_number: int, problem: str):
        super().__init__(path, line_number, problem, "expected 'relative/path label', label an integer")


@dataclass(frozen=True)
class VideoEntry:
    path: Path
    label: int


@dataclass
class DatasetIndex:
    """What a reader found: the videos in order, class names, and listed clips absent from disk.

    Missing clips stay in ``entries`` (so the dataset has the size its annotations say and every
    copy indexes the same way); the dataset replaces them like any other broken video.
    ``ids`` names each entry the way its annotations do (Kinetics clip stems, SSv2 ids), for readers
    whose annotations name videos; see ``video_ids``.
    """

    entries: list[VideoEntry]
    class_names: list[str]
    root: Path
    annotation: Path
    missing: list[Path] = field(default_factory=list)
    ids: list[str] | None = None

    def video_ids(self) -> list[str]:
        """A name per entry that is the same on every copy of the dataset and never an absolute path.

        Per-video predictions of two copies are paired by these names, so they must not depend on
        where a copy is mounted, how its folders are laid out (Kinetics nested or flat) or which
        container it was re-encoded to (``bench.data prepare``): annotation names where the
        annotations have them, else the path relative to the root without its suffix.
        """
        if self.ids is not None:
            return list(self.ids)
        return [Path(os.path.relpath(e.path, self.root)).with_suffix("").as_posix() for e in self.entries]


def parse_list(path: Path, root: Path) -> list[VideoEntry]:
    entries = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        line = line.strip()
        if not line:
            continue
        relative, sep, label = line.rpartition(" ")
        if not sep or not relative.strip() or not label.lstrip("-").isdigit() or int(label) < 0:
            raise ListFileError(path, number, f"cannot read {line!r}")
        entries.append(VideoEntry(root / relative.strip(), int(label)))
    return entries


def write_list(path: Path, entries: list[VideoEntry], root: Path | None = None) -> None:
    """Atomically write ``entries`` as a list file, paths relative to ``root`` when inside it."""
    lines = []
    for entry in entries:
        shown = os.path.relpath(entry.path, root) if root is not None and _inside(entry.path, root) else entry.path
        lines.append(f"{shown} {entry.label}\n")
    write_text_atomic(path, "".join(lines))


def _inside(path: Path, root: Path) -> bool:
    try:
        Path(path).resolve().relative_to(Path(root).resolve())
        return True
    except ValueError:
        return False


def write_text_atomic(path: Path, text: str) -> None:
    atomic_write(path, text)


def find_missing(entries: list[VideoEntry]) -> list[Path]:
    return [entry.path for entry in entries if not entry.path.is_file()]


def read_list_dataset(split: str, root: str | Path | None) -> DatasetIndex:
    """A directory of list files (the reference format; also what ``scan`` and the synthetic world write)."""
    base = resolve_root("list", root, LIST_LAYOUT).path
    list_path = _split_file(base, split)
    entries = parse_list(list_path, base)
    classes_path = base / "classes.txt"
    if classes_path.is_file():
        class_names = [name.strip() for name in classes_path.read_text().splitlines() if name.strip()]
    else:
        labels = [e.label for name in SPLIT_FILES for path in _existing(base, name) for e in parse_list(path, base)]
        class_names = [str(i) for i in range(max(labels, default=-1) + 1)]
    too_big = [e for e in entries if e.label >= len(class_names)]
    if too_big:
        raise DatasetRootError("list", base, f"{list_path.name} has label {too_big[0].label} but "
                               f"{classes_path.name} names only {len(class_names)} classes", LIST_LAYOUT)
    return DatasetIndex(entries, class_names, base, list_path, find_missing(entries))


def _existing(base: Path, split: str) -> list[Path]:
    return [base / name for name in SPLIT_FILES[split] if (base / name).is_file()][:1]


def _split_file(base: Path, split: str) -> Path:
    if split not in SPLIT_FILES:
        raise ValueError(f"split must be one of {tuple(SPLIT_FILES)}, got {split!r}")
    found = _existing(base, split)
    if not found:
        raise DatasetRootError("list", base, f"no {' or '.join(SPLIT_FILES[split])} for split '{split}'",
                               LIST_LAYOUT)
    return found[0]
