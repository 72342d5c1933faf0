"""``python -m bench.data prepare``: re-encode a dataset for fast random access.

Sampled decoding can only skip the frames between keyframes: with x264's default keyframe interval
(250, as most K400 and SSv2 copies have) a clip still decodes most of the video. The default copy is
all-intra (every frame a keyframe), so each sampled frame costs one frame's decode and nothing else.
On the benchmark's Kinetics-like clip at 256p, decord's read of 8 frames at stride 16 took 16-23 ms
of CPU all-intra against 27-33 ms with keyframes 4-8 apart and 38-47 ms at 16 (2-core dev machine);
the price is files about 3x the original's size. The short side is the K400 recipe's largest jittered short side (258), so
training never upscales; SSv2's 240p originals are never upscaled either (``reencode`` only shrinks). The prepared tree
mirrors the original (annotation files copied, each video at its relative path as ``.mp4``), so
the K400/SSv2 readers, which look clips up by file stem, read prepared and original copies alike;
list files are rewritten to the new paths.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from fractions import Fraction
from multiprocessing import get_context
from pathlib import Path

import av

from bench.atomic import atomic_write
from bench.progress import progress_bar

from .dataset import read_index
from .listfile import VideoEntry, write_list
from .progress import ProgressLog

ANNOTATION_SUFFIXES = (".csv", ".json", ".txt")
ANNOTATION_DIRS = (".", "annotations", "labels")


@dataclass(frozen=True)
class EncodeSettings:
    short_side: int = 258  # the K400 recipe's short-side jitter tops out at 258 (ClipSpec.short_side_range)
    keyframe_interval: int = 1  # all-intra: a sampled frame never needs the frames before it
    crf: int = 23
    preset: str = "veryfast"
    bframes: int = 0  # B-frames make the decoder hold frames back, which costs every random access


def even(value: float) -> int:
    return max(2, int(round(value / 2)) * 2)


def reencode(source: Path, target: Path, settings: EncodeSettings) -> int:
    """Write ``source`` as h264 mp4 at ``settings``, never upscaling; returns the frame count.

    Written atomically (bench.atomic), so an interrupted run leaves no half file behind.
    """
    frames = 0

    def encode(temp: Path) -> None:
        nonlocal frames
        with av.open(str(source)) as reader:
            video = reader.streams.video[0]
            rate = video.average_rate or video.guessed_rate or 30
            scale = min(1.0, settings.short_side / min(video.codec_context.width, video.codec_context.height))
            width, height = even(video.codec_context.width * scale), even(video.codec_context.height * scale)
            with av.open(str(temp), "w", format="mp4") as writer:
                stream = writer.add_stream("libx264", rate=rate)
                stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
                stream.codec_context.gop_size = settings.keyframe_interval
                stream.options = {"crf": str(settings.crf), "preset": settings.preset,
                                  "x264-params": f"keyint={settings.keyframe_interval}:min-keyint="
                                                 f"{settings.keyframe_interval}:scenecut=0:bframes={settings.bframes}"}
                for frame in reader.decode(video):
                    image = frame.reformat(width=width, height=height, format="yuv420p", interpolation="BICUBIC")
                    image.pts, image.time_base = frames, 1 / Fraction(rate)  # constant frame rate
                    writer.mux(stream.encode(image))
                    frames += 1
                writer.mux(stream.encode())
        if frames == 0:
            raise ValueError("no video frames decoded")

    atomic_write(target, encode)
    return frames


def _prepare_one(job: tuple[str, str, EncodeSettings]) -> dict:
    source, target, settings = job
    try:
        return {"path": source, "ok": True, "frames": reencode(Path(source), Path(target), settings)}
    except Exception as err:  # a broken video is recorded and skipped, never fatal (no partial file remains)
        return {"path": source, "ok": False, "error": f"{type(err).__name__}: {err}"}


def prepared_path(entry: VideoEntry, root: Path, out: Path) -> Path:
    return (out / Path(entry.path).resolve().relative_to(root.resolve())).with_suffix(".mp4")


def copy_annotations(root: Path, out: Path) -> None:
    for folder in ANNOTATION_DIRS:
        source = root / folder
        if not source.is_dir():
            continue
        for path in source.iterdir():
            if path.is_file() and path.suffix in ANNOTATION_SUFFIXES:
                (out / folder).mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, out / folder / path.name)


def prepare(dataset: str, root: str | Path | None, out: Path, splits: tuple[str, ...] = ("train", "val"),
            settings: EncodeSettings = EncodeSettings(), workers: int = os.cpu_count() or 1,
            progress: bool = True) -> dict:
    """Re-encode every listed video of ``splits`` under ``out``; resumable through ``out/prepare.progress.jsonl``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    indices = {split: read_index(dataset, split, root) for split in splits}
    base = next(iter(indices.values())).root
    log = ProgressLog(out / "prepare.progress.jsonl")
    jobs = {}
    for index in indices.values():
        for entry in index.entries:
            if entry.path.is_file():
                jobs[str(entry.path)] = (str(entry.path), str(prepared_path(entry, base, out)), settings)
    todo = [job for path, job in jobs.items() if path not in log.done]
    began = time.perf_counter()
    with log, get_context("fork").Pool(workers) as pool:
        for result in progress_bar(pool.imap_unordered(_prepare_one, todo, chunksize=1), total=len(jobs),
                           initial=len(jobs) - len(todo), desc=f"prepare {dataset}", disable=not progress):
            log.append(result)
    elapsed = time.perf_counter() - began
    copy_annotations(base, out)
    if dataset == "list":
        for index in indices.values():
            entries = [VideoEntry(prepared_path(e, base, out), e.label) for e in index.entries]
            write_list(out / index.annotation.name, entries, root=out)
    failed = {path: r["error"] for path, r in log.done.items() if not r["ok"]}
    summary = {"dataset": dataset, "root": str(base), "out": str(out), "videos": len(jobs),
               "failed": failed, "missing": sum(len(i.missing) for i in indices.values()),
               "settings": settings.__dict__, "workers": workers,
               # this call's share (a resumed one skips what is done): whether preparing pays, README
               "encoded_now": len(todo), "elapsed_s": round(elapsed, 3),
               "videos_per_s": round(len(todo) / elapsed, 3) if todo and elapsed > 0 else None}
    (out / "prepare_report.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
