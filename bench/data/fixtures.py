"""Real-format stand-ins for Kinetics-400 and Something-Something v2, for benchmarks that need real decoding.

A data-path benchmark is only honest on files that cost what the real ones cost to decode: the same
codec, container, size, frame rate, length, keyframe spacing and a realistic bitrate. ``write_moving_clip``
pans a camera over a detailed random scene with sensor-like grain (a flat synthetic frame would decode
unrealistically fast); ``write_kinetics_like`` and ``write_ssv2_like`` lay such clips out as the real
datasets are on disk (DESIGN.md §5), so the real readers (``read_kinetics``, ``read_ssv2``) index them.
A fixture folder is keyed by its config's digest, so a cached copy is reused only for the same config;
``prepared`` fixtures hold the clips as ``bench.data prepare`` writes them (all-intra, short side 258).
"""
from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import av
import numpy as np

from .prepare import EncodeSettings, reencode
from .ssv2 import template_to_label


@dataclass(frozen=True)
class ClipFormat:
    """How one clip is encoded. ``seconds`` is a (min, max) range: each clip draws its length in it."""

    width: int = 340
    height: int = 256
    fps: int = 30
    seconds: tuple[float, float] = (10, 10)
    codec: str = "libx264"
    container: str = "mp4"
    options: tuple[tuple[str, str], ...] = (("crf", "23"),)  # x264 defaults otherwise: keyint 250, B-frames


KINETICS_FORMAT = ClipFormat()  # DESIGN §5/§6: 340x256, 30 fps, 10 s, h264, keyframes 250 apart
# SSv2 as distributed: VP9 in webm, 240 px high (427 wide at 16:9), 12 fps, 2-6 s.
SSV2_FORMAT = ClipFormat(width=427, height=240, fps=12, seconds=(2, 6), codec="libvpx-vp9", container="webm",
                         options=(("crf", "32"), ("b", "0"), ("deadline", "good"), ("cpu-used", "4")))


def scene(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """(height, width, 3) float32 detail at four scales (blocky noise, bilinearly smoothed), around 128."""
    out = np.zeros((height, width, 3), np.float32)
    for cells, weight in ((6, 80), (24, 40), (96, 30), (200, 25)):
        coarse = rng.uniform(-1, 1, (cells + 1, cells + 1, 3)).astype(np.float32)
        ys, xs = np.linspace(0, cells, height), np.linspace(0, cells, width)
        y0, x0 = np.minimum(ys.astype(int), cells - 1), np.minimum(xs.astype(int), cells - 1)
        fy, fx = (ys - y0)[:, None, None], (xs - x0)[None, :, None]
        top = coarse[y0][:, x0] * (1 - fx) + coarse[y0][:, x0 + 1] * fx
        bottom = coarse[y0 + 1][:, x0] * (1 - fx) + coarse[y0 + 1][:, x0 + 1] * fx
        out += weight * (top * (1 - fy) + bottom * fy)
    return out + 128


def clip_frames(fmt: ClipFormat, rng: np.random.Generator) -> int:
    low, high = fmt.seconds
    return max(1, round(fmt.fps * rng.uniform(low, high)))


def write_moving_clip(path: Path, seed: int, fmt: ClipFormat = KINETICS_FORMAT) -> int:
    """A camera pan (one pixel per frame across, half down) over a random scene, with grain; returns frames."""
    rng = np.random.default_rng(seed)
    frames = clip_frames(fmt, rng)
    world = scene(fmt.height + frames, fmt.width + frames, rng)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", format=fmt.container) as container:
        stream = container.add_stream(fmt.codec, rate=fmt.fps)
        stream.width, stream.height, stream.pix_fmt = fmt.width, fmt.height, "yuv420p"
        stream.options = dict(fmt.options)
        for t in range(frames):
            frame = world[t // 2:t // 2 + fmt.height, t:t + fmt.width] + rng.normal(0, 4, (fmt.height, fmt.width, 1))
            image = np.clip(frame, 0, 255).astype(np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())
    return frames


@dataclass(frozen=True)
class FixtureConfig:
    """A fixture dataset: how many clips per split and class, and their format.

    Only ``distinct`` clips are encoded (every clip when None); the others are hard links to them
    under their own names, which costs a loader the same decoding and the benchmark no encoding time.
    ``prepared``: store the clips as ``bench.data prepare`` re-encodes them, with these settings.
    """

    dataset: str  # "k400" | "ssv2"
    train_clips: int
    val_clips: int
    classes: int = 8
    fmt: ClipFormat = KINETICS_FORMAT
    seed: int = 0
    distinct: int | None = None
    prepared: EncodeSettings | None = None

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:12]


def _class_names(config: FixtureConfig) -> list[str]:
    if config.dataset == "k400":
        return [f"action {i:03d}" for i in range(config.classes)]
    return [f"Moving [something] {i:03d} of [something]" for i in range(config.classes)]


def _layout(config: FixtureConfig, root: Path, split: str, number: int) -> tuple[Path, dict]:
    """Where clip ``number`` of ``split`` lives and its annotation row, as the real dataset spells them."""
    names = _class_names(config)
    label = names[number % len(names)]
    if config.dataset == "k400":
        youtube_id, start = f"{split[:2]}{number:09d}", 10 * number
        row = {"label": label, "youtube_id": youtube_id, "time_start": start, "time_end": start + 10, "split": split}
        folder = "train" if split == "train" else "val"
        return root / folder / label / f"{youtube_id}_{start:06d}_{start + 10:06d}.mp4", row
    video_id = str(number + 1 if split == "train" else 10**6 + number + 1)
    row = {"id": video_id, "label": template_to_label(label).lower(), "template": label, "placeholders": []}
    return root / "20bn-something-something-v2" / f"{video_id}.webm", row


def _write_annotations(config: FixtureConfig, root: Path, rows: dict[str, list[dict]]) -> None:
    if config.dataset == "k400":
        for split, name in (("train", "train.csv"), ("val", "validate.csv")):
            with open(root / name, "w", newline="") as handle:
                writer = csv.DictWriter(handle, fieldnames=["label", "youtube_id", "time_start", "time_end", "split"])
                writer.writeheader()
                writer.writerows(rows[split])
        return
    labels = {template_to_label(name): str(i) for i, name in enumerate(_class_names(config))}
    (root / "something-something-v2-labels.json").write_text(json.dumps(labels, indent=1))
    for split, name in (("train", "train"), ("val", "validation")):
        (root / f"something-something-v2-{name}.json").write_text(json.dumps(rows[split], indent=1))


def _write_one(job: tuple[str, int, ClipFormat, EncodeSettings | None]) -> None:
    path, seed, fmt, prepared = job
    temp = Path(path).with_name(f".{Path(path).name}.part")
    write_moving_clip(temp, seed, fmt)
    if prepared is not None:
        original = temp.with_name(temp.name + ".original")
        os.replace(temp, original)
        reencode(original, temp, prepared)
        original.unlink()
    os.replace(temp, path)


def ensure_fixture(config: FixtureConfig, cache: Path, workers: int = os.cpu_count() or 1) -> Path:
    """The fixture's root under ``cache``, written (in ``workers`` processes) unless a complete copy is there."""
    if config.dataset not in ("k400", "ssv2"):
        raise ValueError(f"fixtures exist for k400 and ssv2, not {config.dataset!r}")
    root = Path(cache) / f"{config.dataset}-{config.digest()}"
    if (root / "COMPLETE").is_file():
        return root
    shutil.rmtree(root, ignore_errors=True)
    rows: dict[str, list[dict]] = {}
    jobs, links = [], []
    for split, count in (("train", config.train_clips), ("val", config.val_clips)):
        rows[split] = []
        for number in range(count):
            path, row = _layout(config, root, split, number)
            path.parent.mkdir(parents=True, exist_ok=True)
            rows[split].append(row)
            if config.distinct is not None and len(jobs) >= config.distinct:
                links.append((jobs[len(links) % config.distinct][0], str(path)))
                continue
            seed = int(np.random.SeedSequence([config.seed, split == "train", number]).generate_state(1)[0])
            jobs.append((str(path), seed, config.fmt, config.prepared))
    _write_annotations(config, root, rows)
    if workers > 1:
        from multiprocessing import get_context
        with get_context("forkserver").Pool(workers) as pool:
            pool.map(_write_one, jobs, chunksize=1)
    else:
        for job in jobs:
            _write_one(job)
    for source, target in links:
        os.link(source, target)
    (root / "config.json").write_text(json.dumps(asdict(config), indent=2))
    (root / "COMPLETE").touch()
    return root
