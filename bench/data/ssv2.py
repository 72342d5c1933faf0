"""Something-Something v2 as distributed: a labels JSON, per-split JSON lists and ``<id>.webm`` videos."""
from __future__ import annotations

import json
from pathlib import Path

from .listfile import DatasetIndex, VideoEntry
from .roots import DatasetRootError, index_videos_by_stem, resolve_root

SSV2_LAYOUT = """\
<root>/something-something-v2-labels.json       {"<template without brackets>": "<index>", ...}
<root>/something-something-v2-train.json        [{"id": "78687", "label": ..., "template": "Putting [something] on [something]", ...}]
<root>/something-something-v2-validation.json
    (the JSON files may also sit under <root>/labels/ or <root>/annotations/, named labels.json,
     train.json, validation.json)
<root>/20bn-something-something-v2/<id>.webm    (or <root>/videos/<id>.webm, or <root>/<id>.webm)"""
JSON_NAMES = {
    "labels": ("something-something-v2-labels.json", "labels.json"),
    "train": ("something-something-v2-train.json", "train.json"),
    "val": ("something-something-v2-validation.json", "validation.json"),
}
VIDEO_DIRS = ("20bn-something-something-v2", "videos")


def template_to_label(template: str) -> str:
    """The labels file spells templates without the brackets around placeholders."""
    return template.replace("[", "").replace("]", "")


def read_ssv2(split: str, root: str | Path | None) -> DatasetIndex:
    found = resolve_root("ssv2", root, SSV2_LAYOUT)
    base = found.path
    if split not in ("train", "val"):
        raise ValueError(f"split must be 'train' or 'val', got {split!r}")

    def fail(problem: str) -> DatasetRootError:
        return DatasetRootError("ssv2", base, problem, SSV2_LAYOUT, found.source)

    labels_path, split_path = _find_json(base, "labels", fail), _find_json(base, split, fail)
    labels = _load_json(labels_path, dict, fail)
    class_names = [name for name, _ in sorted(labels.items(), key=lambda item: int(item[1]))]
    if sorted(int(v) for v in labels.values()) != list(range(len(labels))):
        raise fail(f"{labels_path} indices are not 0..{len(labels) - 1}")

    video_dir = next((base / d for d in VIDEO_DIRS if (base / d).is_dir()), base)
    by_stem = index_videos_by_stem(video_dir)
    entries, missing, ids = [], [], []
    for number, item in enumerate(_load_json(split_path, list, fail)):
        try:
            video_id, label = str(item["id"]), labels[template_to_label(item["template"])]
        except (KeyError, TypeError) as err:
            raise fail(f"{split_path} item {number}: no 'id'/'template' or template not in "
                       f"{labels_path.name}: {err}") from err
        path = by_stem.get(video_id)
        if path is None:
            path = video_dir / f"{video_id}.webm"
            missing.append(path)
        entries.append(VideoEntry(path, int(label)))
        ids.append(video_id)
    return DatasetIndex(entries, class_names, base, split_path, missing, ids)


def _find_json(base: Path, key: str, fail) -> Path:
    for folder in (base, base / "labels", base / "annotations"):
        for name in JSON_NAMES[key]:
            if (folder / name).is_file():
                return folder / name
    raise fail(f"no {' or '.join(JSON_NAMES[key])} (looked in the root, root/labels, root/annotations)")


def _load_json(path: Path, kind: type, fail):
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise fail(f"{path} is not valid JSON: {err}") from err
    if not isinstance(data, kind):
        raise fail(f"{path} should hold a JSON {'object' if kind is dict else 'list'}")
    return data
