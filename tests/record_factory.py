"""Run records for the report and check tests, written through the real results store.

The numbers are test inputs chosen for the cases under test (different methods, seed spreads,
appearance vs motion), not measurements.
"""
from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import numpy as np

from bench.config import get_recipe
from bench.store.predictions import Predictions, write_predictions
from bench.store.records import RunRecord, write_record

BACKBONE = "synth_vit"
BACKBONE_PARAMS = 500_000
HEAD = {"synth_appearance": 1_290, "synth_motion": 1_032}
# method -> (parameters the method adds, whether the backbone is trained, top-1 on appearance, on motion)
METHODS = {
    "linear_probe": (0, False, 90.0, 20.0),
    "st_adapter": (40_000, False, 93.0, 80.0),
    "full_ft": (0, True, 95.0, 60.0),
}


def recipe_as_run(name: str) -> dict:
    """The recipe a record's config holds: the named recipe's (``synth(base_lr=0.003)``: synth's), so
    the report finds its family and clip as in a real record."""
    return {**get_recipe(name.split("(", 1)[0]).to_dict(), "name": name}


def make_record(method: str, dataset: str, seed: int, top1: float, *, backbone: str = BACKBONE,
                recipe: str = "synth", added: int | None = None, gflops: float = 0.25,
                method_options: dict | None = None, throughput: float = 0.0,
                peak_memory: int = 0, classes: int = 0) -> RunRecord:
    declared, trains_backbone = METHODS[method][:2] if method in METHODS else (0, False)
    added = declared if added is None else added
    head = HEAD.get(dataset, 1_000)
    config = {"method": method, "method_options": method_options or {}, "dataset": dataset,
              "backbone": backbone, "recipe": recipe_as_run(recipe), "seed": seed}
    config_hash = hashlib.sha256(repr(sorted(config.items())).encode()).hexdigest()[:12]
    return RunRecord(
        method=method, dataset=dataset, backbone=backbone, recipe=recipe, seed=seed,
        config_hash=config_hash, config=config, top1=top1, top5=min(100.0, top1 + 5.0),
        params_trainable=head + added + (BACKBONE_PARAMS if trains_backbone else 0),
        params_total=BACKBONE_PARAMS + added + head, gflops_per_view=gflops, views=2,
        wall_time_s=12.5, throughput_clips_per_s=throughput, peak_memory_bytes=peak_memory,
        broken_videos=0, git_commit="0" * 40, git_dirty=False, packages={"torch": "test"},
        hardware={"cpu": "test"}, created_at="2025-01-01T00:00:00+00:00", per_class_top1=[top1] * classes,
    )


def make_predictions(correct, num_classes: int = 10, ids: list[str] | None = None) -> Predictions:
    """Per-video rows in which exactly the videos flagged in ``correct`` are right at top-1."""
    correct = np.asarray(correct, dtype=bool)
    n = len(correct)
    labels = np.arange(n) % num_classes
    top1 = np.where(correct, labels, (labels + 1) % num_classes)
    k = min(5, num_classes)
    return Predictions(
        video_ids=np.asarray(ids if ids is not None else [f"videos/val/{i:06d}" for i in range(n)], dtype=str),
        labels=labels, source_index=np.arange(n), topk_index=np.stack([(top1 + j) % num_classes for j in range(k)], 1),
        topk_prob=np.tile(np.linspace(0.5, 0.1, k, dtype=np.float32), (n, 1)))


def attach_predictions(results_dir: Path, record: RunRecord, predictions: Predictions) -> RunRecord:
    """Write ``predictions`` beside the record and the record with its top-1/top-5 taken from them."""
    meta = write_predictions(results_dir, record.stem, predictions, record.config_hash)
    record = dataclasses.replace(record, predictions=meta, top1=100.0 * predictions.top1_correct.mean(),
                                 top5=100.0 * predictions.top5_correct.mean(),
                                 extra={**record.extra, "val_videos": predictions.videos})
    write_record(results_dir, record)
    return record


def chosen_right(n_videos: int, top1: float, key: str) -> np.ndarray:
    """``top1`` % of ``n_videos`` right, which ones fixed by ``key``."""
    right = round(top1 * n_videos / 100)
    rng = np.random.default_rng(int(hashlib.sha256(key.encode()).hexdigest()[:8], 16))
    correct = np.zeros(n_videos, dtype=bool)
    correct[rng.permutation(n_videos)[:right]] = True
    return correct


def make_curves(top1: float, seed: int) -> dict:
    """Two epochs of four steps, a point every two steps and an evaluation per epoch."""
    steps = [2, 4, 6, 8]
    return {"log_every": 2, "steps_per_epoch": 4,
            "train": {"step": steps, "loss": [2.0 / (1 + k + 0.1 * seed) for k in range(4)],
                      "lr": [0.01, 0.02, 0.015, 0.0], "clips_per_s": [100.0 + seed, 110.0, 108.0, 111.0]},
            "eval": {"step": [4, 8], "top1": [top1 - 5.0, top1], "top5": [min(100.0, top1), min(100.0, top1 + 5)]}}


def write_suite(results_dir: Path, seeds: tuple[int, ...] = (0, 1, 2), videos: int | None = None) -> list[RunRecord]:
    """Every method in METHODS on both synthetic tasks, each seed a little apart; with ``videos``,
    each record has per-video outputs on that many videos (top-1 as the record says) and curves."""
    records = []
    for method, (_, _, appearance, motion) in METHODS.items():
        for dataset, top1 in (("synth_appearance", appearance), ("synth_motion", motion)):
            for seed in seeds:
                record = make_record(method, dataset, seed, top1 + 0.75 * seed - 0.5 * (seed % 2))
                if videos is None:
                    write_record(results_dir, record)
                else:
                    record = attach_predictions(results_dir, dataclasses.replace(
                        record, curves=make_curves(record.top1, seed)), make_predictions(
                        chosen_right(videos, record.top1, record.stem)))
                records.append(record)
    return records
