"""``python -m bench.data bench-prepare``: what a ``prepare``d copy costs to make and what it saves per read.

Whether preparing pays is one division: the CPU it costs per video, once, against the CPU each
later read of that video saves. Both are measured here on the same machine and files: Kinetics-shaped
clips (``fixtures.KINETICS_FORMAT``: h264 340x256, 30 fps, 10 s, keyframes 250 apart, every clip
encoded on its own) go through ``prepare`` as a user runs it (``workers`` processes; wall time, and
the CPU of this process and its workers from ``getrusage``), then the suite's sampled reader
(``read_frames_pyav``, one thread, K400's sampling) reads the originals and the copy: a training
draw and the three test views, CPU ms per clip, min and median of ``repeats`` passes (other jobs on a
shared machine only ever add time). The record goes to ``results/perf/prepare_<tag>.json``.
"""
from __future__ import annotations

import json
import os
import platform
import resource
import socket
import tempfile
import time
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

import av
import numpy as np
import torch

from bench.store.provenance import hardware

from .decode import read_frames_pyav
from .fixtures import KINETICS_FORMAT, ClipFormat, FixtureConfig, ensure_fixture
from .kinetics import read_kinetics
from .prepare import EncodeSettings, prepare
from .profile import K400_CLIP, cpu_ms_per_item
from .sampling import sample_indices


def _cpu_seconds() -> float:
    """CPU seconds of this process and of its finished children (``prepare``'s pool)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def read_costs(paths: list[Path], repeats: int) -> dict:
    """CPU ms per clip of the suite's reader on ``paths``: a training draw, and a test sample (3 views)."""
    def reads(train: bool):
        def run():
            for number, path in enumerate(paths):
                rng = np.random.default_rng(number)
                read_frames_pyav(path, lambda n: sample_indices(K400_CLIP, n, train, rng))
        return run
    return {"train": cpu_ms_per_item(reads(True), repeats, len(paths)),
            "eval": cpu_ms_per_item(reads(False), repeats, len(paths))}


def run_prepare_benchmark(videos: int, workers: int, cache: Path, repeats: int = 3, tag: str | None = None,
                          out: Path | None = None, fmt: ClipFormat = KINETICS_FORMAT) -> dict:
    """Prepare ``videos`` clips of ``fmt`` (written under ``cache`` on first use; smaller only for
    smoke runs) with ``workers`` processes, then time reads of both copies; write and return the record."""
    torch.set_num_threads(1)
    config = FixtureConfig("k400", videos, 0, fmt=fmt)
    root = ensure_fixture(config, cache, workers)
    originals = [entry.path for entry in read_kinetics("train", root).entries]
    settings = EncodeSettings()
    with tempfile.TemporaryDirectory() as folder:
        copy = Path(folder) / "prepared"
        load_before, cpu_before, began = os.getloadavg()[0], _cpu_seconds(), time.perf_counter()
        summary = prepare("k400", root, copy, ("train",), settings, workers, progress=False)
        wall, cpu = time.perf_counter() - began, _cpu_seconds() - cpu_before
        load_after = os.getloadavg()[0]
        if summary["failed"]:
            raise RuntimeError(f"prepare failed on {len(summary['failed'])} fixture clips: {summary['failed']}")
        prepared = [entry.path for entry in read_kinetics("train", copy).entries]
        reads = {"original": read_costs(originals, repeats), "prepared": read_costs(prepared, repeats)}
        sizes = {name: sum(p.stat().st_size for p in paths) for name, paths in (("original", originals),
                                                                                ("prepared", prepared))}
    cpu_per_video = cpu / videos
    saved = {split: round(reads["original"][split]["min"] - reads["prepared"][split]["min"], 2)
             for split in ("train", "eval")}
    record = {
        "kind": "prepare_speed", "tag": tag or socket.gethostname(), "hardware": hardware(),
        "load_average_1min": {"before": round(load_before, 2), "after": round(load_after, 2)},
        "videos": videos, "workers": workers, "fixture": asdict(config), "settings": asdict(settings),
        "wall_s": round(wall, 2), "videos_per_s": round(videos / wall, 3),
        "cpu_s_per_video": round(cpu_per_video, 3), "cores_busy": round(cpu / wall, 2),
        "bytes": sizes, "size_ratio": round(sizes["prepared"] / sizes["original"], 2),
        "read_cpu_ms_per_clip": reads, "read_cpu_ms_saved_per_clip": saved,
        # reads of one video that repay its preparation in CPU (min read costs): epochs x runs for training
        "break_even_reads": {split: round(cpu_per_video * 1000 / saved[split], 1) if saved[split] > 0 else None
                             for split in saved},
        "measure": "prepare: wall and getrusage CPU (self + pool); reads: process_time, one thread, min/median "
                   "of repeats; read_frames_pyav with K400's sampling (training draw; 3 test views)",
        "versions": {"av": av.__version__, "torch": torch.__version__, "python": platform.python_version(),
                     "ffmpeg": {k: ".".join(map(str, v)) for k, v in av.library_versions.items()}},
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    out = out or Path("results/perf") / f"prepare_{record['tag']}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n")
    return {**record, "path": str(out)}
