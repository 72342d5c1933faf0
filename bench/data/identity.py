"""What data a run sees, as part of its identity: the validation list, and whether the videos are a
``bench.data prepare`` copy (re-encoded and resized, so not the originals' pixels) and with which
settings. Two runs that differ in either computed different things and must not share a record."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.store.predictions import video_list_sha256

PREPARE_MANIFEST = "prepare_report.json"  # written by bench.data.prepare into the copy's root


def prepare_manifest(annotation: Path) -> dict[str, Any] | None:
    """The encode settings of the prepared copy that ``annotation`` belongs to, or None for originals.
    ``prepare`` copies the annotation files into the copy (at their place below its root)."""
    for folder in (annotation.parent, *annotation.parents[:2]):
        manifest = folder / PREPARE_MANIFEST
        if manifest.is_file():
            return {"settings": json.loads(manifest.read_text())["settings"]}
    return None


def data_identity(val_set) -> dict[str, Any]:
    """Of a validation dataset (``bench.data.VideoDataset``)."""
    labels = [entry.label for entry in val_set.source_list]
    return {"val_list_sha256": video_list_sha256(val_set.video_ids, labels),
            "prepared": prepare_manifest(Path(val_set.annotation))}
