"""Per-video outputs of a run: one compressed ``.npz`` beside its record, checked against it when read.

The intervals over videos and the paired tests need, for every validation video, which video it is,
its label and what the model predicted; the tables need none of it. So the record stays small and the
rows live beside it in ``runs/<record stem>.predictions.npz``: per video its id (see
``DatasetIndex.video_ids``: never an absolute path), its listed label, the index of the video actually
read (a broken video's stand-in, the next readable one: such a row is marked replaced and left out of
every statistic) and the top-k classes
with their probabilities, in dataset order. The record holds the file's sha256 and the
validation-list hash; the file holds the record's config hash and the same list hash. A loader that
finds any of them disagreeing refuses the pair, naming both files.

The file is written with fixed zip timestamps, so the same predictions always give the same bytes.
"""
from __future__ import annotations

import hashlib
import io
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from bench.atomic import atomic_write
from bench.store.records import RecordError, RunRecord, runs_dir

PREDICTIONS_SUFFIX = ".predictions.npz"


TOP_K = 5


_ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # the earliest time zip can store: no wall clock in the bytes


_ARRAYS = ("video_ids", "labels", "source_index", "topk_index", "topk_prob")


def video_list_sha256(video_ids: Sequence[str], labels: Sequence[int]) -> str:
    """Which validation list a run was evaluated on: its ids and labels, in order.

    Equal hashes mean the same videos in the same order with the same labels, wherever the copy is
    mounted: only then are two runs comparable video by video without matching ids.
    """
    rows = [[str(i), int(label)] for i, label in zip(video_ids, labels, strict=True)]
    return hashlib.sha256(json.dumps(rows, separators=(",", ":"), ensure_ascii=False).encode()).hexdigest()


@dataclass(frozen=True, eq=False)
class Predictions:
    """One row per validation video, in dataset order."""

    video_ids: np.ndarray  # (N,) str
    labels: np.ndarray  # (N,) int: the listed label
    source_index: np.ndarray  # (N,) int: the row of the video actually evaluated (itself unless broken)
    topk_index: np.ndarray  # (N, k) int: classes by falling probability
    topk_prob: np.ndarray  # (N, k) float32: their probabilities (mean over the test views)

    def __post_init__(self) -> None:
        n = len(self.video_ids)
        shapes = {name: getattr(self, name).shape for name in _ARRAYS}
        k = shapes["topk_index"][1:2]
        if (shapes["labels"] != (n,) or shapes["source_index"] != (n,) or len(k) != 1
                or shapes["topk_index"] != (n, k[0]) or shapes["topk_prob"] != (n, k[0])):
            raise ValueError(f"predictions arrays disagree in shape: {shapes}")

    @property
    def videos(self) -> int:
        return len(self.video_ids)

    @property
    def top_k(self) -> int:
        return self.topk_index.shape[1]

    @property
    def replaced(self) -> np.ndarray:
        """Rows whose own video could not be read (another video stood in for it)."""
        return self.source_index != np.arange(self.videos)

    @property
    def evaluated(self) -> np.ndarray:
        """Rows that count: a broken validation video is skipped, not scored as its stand-in."""
        return ~self.replaced

    @property
    def counted_labels(self) -> np.ndarray:
        """The label each row was scored against: the evaluated video's, as the record's top-1 counts it."""
        return self.labels[self.source_index]

    @property
    def top1_correct(self) -> np.ndarray:
        return self.topk_index[:, 0] == self.counted_labels

    @property
    def top5_correct(self) -> np.ndarray:
        return (self.topk_index[:, :5] == self.counted_labels[:, None]).any(axis=1)

    def list_sha256(self) -> str:
        return video_list_sha256(self.video_ids.tolist(), self.labels.tolist())


def predictions_file_name(record_stem: str) -> str:
    return record_stem + PREDICTIONS_SUFFIX


def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """``np.savez_compressed`` without the wall-clock timestamps it puts in the zip."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name in sorted(arrays):
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            with archive.open(info, "w", force_zip64=True) as handle:
                np.lib.format.write_array(handle, np.asarray(arrays[name]), allow_pickle=False)
    return buffer.getvalue()


def write_predictions(results_dir: Path | str, record_stem: str, predictions: Predictions,
                      config_hash: str) -> dict[str, object]:
    """Write the file beside the record-to-be; returns the record's ``predictions`` field."""
    list_hash = predictions.list_sha256()
    arrays = {
        "video_ids": np.asarray(predictions.video_ids, dtype=str),
        "labels": predictions.labels.astype(np.int32), "source_index": predictions.source_index.astype(np.int32),
        "topk_index": predictions.topk_index.astype(np.int32), "topk_prob": predictions.topk_prob.astype(np.float32),
        "config_hash": np.asarray(config_hash), "val_list_sha256": np.asarray(list_hash),
    }
    data = _npz_bytes(arrays)
    name = predictions_file_name(record_stem)
    atomic_write(runs_dir(results_dir) / name, data, durable=True)
    return {"file": name, "sha256": hashlib.sha256(data).hexdigest(), "val_list_sha256": list_hash,
            "videos": predictions.videos, "top_k": predictions.top_k}


def load_predictions(results_dir: Path | str, record: RunRecord) -> Predictions | None:
    """The record's per-video outputs, after checking that file and record belong together.

    None for a record without them (schema 1, written before per-video outputs existed).
    """
    meta = record.predictions
    if meta is None:
        return None
    record_path = runs_dir(results_dir) / record.file_name
    path = runs_dir(results_dir) / meta["file"]

    def mismatch(field: str, problem: str) -> RecordError:
        return RecordError(record_path, f"predictions.{field}", f"{problem}; {path.name} and {record_path.name} "
                           "do not belong together: restore the matching pair or re-run with --force")

    if not path.is_file():
        raise RecordError(record_path, "predictions.file", f"{path} is missing; restore it beside the record "
                          "or re-run the configuration with --force")
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != meta["sha256"]:
        raise mismatch("sha256", f"{path.name} has sha256 {digest[:16]}..., the record expects {meta['sha256'][:16]}...")
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in (*_ARRAYS, "config_hash", "val_list_sha256")}
    except (KeyError, ValueError, zipfile.BadZipFile) as err:
        raise RecordError(path, "<npz>", f"not a predictions file ({err})") from err
    if str(arrays["config_hash"]) != record.config_hash:
        raise mismatch("file", f"{path.name} was written by config {arrays['config_hash']}, the record is "
                       f"config {record.config_hash}")
    predictions = Predictions(**{name: arrays[name] for name in _ARRAYS})
    for field, found in (("val_list_sha256", str(arrays["val_list_sha256"])),
                         ("val_list_sha256", predictions.list_sha256()),
                         ("videos", predictions.videos), ("top_k", predictions.top_k)):
        if found != meta[field]:
            raise mismatch(field, f"{path.name} has {field} {found!r}, the record says {meta[field]!r}")
    return predictions
