"""Run records for the report and check tests, written through the real results store.

The numbers are test inputs chosen for the cases under test (different methods, seed spreads,
appearance vs motion), not measurements.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

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


def make_record(method: str, dataset: str, seed: int, top1: float, *, backbone: str = BACKBONE,
                recipe: str = "synth", added: int | None = None, gflops: float = 0.25,
                method_options: dict | None = None, throughput: float = 0.0,
                peak_memory: int = 0) -> RunRecord:
    added = METHODS[method][0] if added is None else added
    trains_backbone = METHODS[method][1]
    head = HEAD.get(dataset, 1_000)
    config = {"method": method, "method_options": method_options or {}, "dataset": dataset,
              "backbone": backbone, "recipe": recipe, "seed": seed}
    config_hash = hashlib.sha256(repr(sorted(config.items())).encode()).hexdigest()[:12]
    return RunRecord(
        method=method, dataset=dataset, backbone=backbone, recipe=recipe, seed=seed,
        config_hash=config_hash, config=config, top1=top1, top5=min(100.0, top1 + 5.0),
        params_trainable=head + added + (BACKBONE_PARAMS if trains_backbone else 0),
        params_total=BACKBONE_PARAMS + added + head, gflops_per_view=gflops, views=2,
        wall_time_s=12.5, throughput_clips_per_s=throughput, peak_memory_bytes=peak_memory,
        broken_videos=0, git_commit="0" * 40, git_dirty=False, packages={"torch": "test"},
        hardware={"cpu": "test"}, created_at="2025-01-01T00:00:00+00:00",
    )


def write_suite(results_dir: Path, seeds: tuple[int, ...] = (0, 1, 2)) -> list[RunRecord]:
    """Every method in METHODS on both synthetic tasks, each seed a little apart."""
    records = []
    for method, (_, _, appearance, motion) in METHODS.items():
        for dataset, top1 in (("synth_appearance", appearance), ("synth_motion", motion)):
            for seed in seeds:
                record = make_record(method, dataset, seed, top1 + 0.75 * seed - 0.5 * (seed % 2))
                write_record(results_dir, record)
                records.append(record)
    return records
