"""The synthetic world (DESIGN §7): objects of varied shape, colour and texture on varied backgrounds.

* ``make_stills``: single images for pre-training a small image ViT (no temporal knowledge, like CLIP);
  label = shape x colour (optionally x coarse position), objects anywhere in the frame.
* ``synth_appearance`` (K400-like): label = which object (shape x colour); its motion is random.
* ``synth_motion`` (SSv2-like): label = how the object moves; its appearance is random. Classes come in
  time-reversed pairs and the second class of a pair is *built* by reversing a clip drawn exactly like
  the first, so the frame sets of both classes have one distribution: frame-order-blind models are at
  chance within a pair by construction.

Videos are written once per config as lossless h264 (yuv444) mp4 files plus list files into a cache
directory keyed by a hash of the config, and read back through the decord list-file path.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

import av
import decord
import numpy as np

from bench.atomic import atomic_directory
from bench.cache import cache_root
from bench.progress import progress_bar

from .listfile import VideoEntry, write_list, write_text_atomic

GENERATOR_VERSION = 1  # bump when the rendering changes, so old caches are not reused
SHAPES = ("circle", "square", "triangle", "cross", "ring")
COLOURS = {"red": (220, 40, 40), "blue": (45, 80, 230), "green": (40, 175, 60),
           "yellow": (230, 205, 40), "magenta": (200, 50, 200), "cyan": (40, 200, 210)}
APPEARANCE_COLOURS = ("red", "blue")
TEXTURES = ("solid", "stripes", "checker", "gradient")
MOTION_PAIRS = (("moving right", "moving left"), ("moving down", "moving up"),
                ("approaching", "receding"), ("circling clockwise", "circling anticlockwise"),
                ("appearing", "disappearing"))
TASKS = ("synth_appearance", "synth_motion")
SUPERSAMPLE = 4  # object edges are anti-aliased, so sub-pixel motion changes pixel values


class SynthConfigError(ValueError):
    """A SynthConfig field with an impossible value."""


@dataclass(frozen=True)
class SynthConfig:
    """Size of the synthetic video tasks. The defaults keep the embedded suite within minutes on 2 cores."""

    seed: int = 0
    size: int = 32
    frames: int = 16
    train_per_class: int = 32
    val_per_class: int = 16
    fps: int = 16

    def __post_init__(self) -> None:
        if self.size < 16:
            raise SynthConfigError(f"SynthConfig.size: {self.size} px is too small to draw shapes; use >= 16")
        for name in ("frames", "train_per_class", "val_per_class", "fps"):
            if getattr(self, name) < 1:
                raise SynthConfigError(f"SynthConfig.{name}: must be >= 1, got {getattr(self, name)}")
        if self.frames < 2:
            raise SynthConfigError("SynthConfig.frames: motion needs at least 2 frames")

    def digest(self, task: str) -> str:
        payload = json.dumps({"task": task, "version": GENERATOR_VERSION, **dataclasses.asdict(self)},
                             sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:12]


def class_names(task: str) -> list[str]:
    if task == "synth_appearance":
        return [f"{colour} {shape}" for shape in SHAPES for colour in APPEARANCE_COLOURS]
    if task == "synth_motion":
        return [name for pair in MOTION_PAIRS for name in pair]
    raise ValueError(f"unknown synthetic task {task!r}; choose one of {TASKS}")


# ---------------------------------------------------------------------------------------------------
# Rendering: a batch of B frames, each with its own object parameters, on backgrounds of the same batch.

@dataclass
class ObjectParams:
    """Per-frame object state, arrays of length B (pixel units, angle in radians, alpha in [0, 1])."""

    x: np.ndarray
    y: np.ndarray
    radius: np.ndarray
    angle: np.ndarray
    alpha: np.ndarray
    shape: np.ndarray
    texture: np.ndarray
    colour: np.ndarray  # (B, 3)


def _shape_mask(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Inside test in object coordinates (unit radius)."""
    r2 = u * u + v * v
    if shape == "circle":
        return r2 <= 1
    if shape == "ring":
        return (r2 <= 1) & (r2 >= 0.3)
    if shape == "square":
        return np.maximum(abs(u), abs(v)) <= 0.8
    if shape == "cross":
        return ((abs(u) <= 0.3) & (abs(v) <= 0.95)) | ((abs(v) <= 0.3) & (abs(u) <= 0.95))
    angles = np.pi / 2 + 2 * np.pi / 3 * np.arange(3)  # triangle: three half-planes, inradius 0.5
    return np.all([u * math.cos(a) + v * math.sin(a) <= 0.5 for a in angles], axis=0)


def _texture(texture: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Brightness pattern in [0, 1] that moves and turns with the object."""
    if texture == "solid":
        return np.ones_like(u)
    if texture == "stripes":
        return (np.sin(3 * np.pi * u) > 0).astype(u.dtype)
    if texture == "checker":
        return ((np.floor(2 * u) + np.floor(2 * v)) % 2).astype(u.dtype)
    return np.clip((u + 1) / 2, 0, 1)


def render_objects(params: ObjectParams, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(coverage (B, S, S), premultiplied colour (B, S, S, 3)) from supersampled masks."""
    n = size * SUPERSAMPLE
    centres = (np.arange(n, dtype=np.float32) + 0.5) / SUPERSAMPLE
    def column(values: np.ndarray) -> np.ndarray:
        return values.astype(np.float32)[:, None, None]

    dx, dy = centres[None, None, :] - column(params.x), centres[None, :, None] - column(params.y)
    cos, sin, radius = column(np.cos(params.angle)), column(np.sin(params.angle)), column(params.radius)
    u, v = (cos * dx + sin * dy) / radius, (cos * dy - sin * dx) / radius
    mask = np.zeros(u.shape, np.float32)
    shade = np.zeros(u.shape, np.float32)
    for i, shape in enumerate(SHAPES):
        chosen = params.shape == i
        if chosen.any():
            mask[chosen] = _shape_mask(shape, u[chosen], v[chosen])
    for i, texture in enumerate(TEXTURES):
        chosen = params.texture == i
        if chosen.any():
            shade[chosen] = 0.55 + 0.45 * _texture(texture, u[chosen], v[chosen])
    mask *= column(params.alpha)

    def pool(x: np.ndarray) -> np.ndarray:
        return x.reshape(x.shape[0], size, SUPERSAMPLE, size, SUPERSAMPLE).mean(axis=(2, 4))

    return pool(mask), pool(mask * shade)[..., None] * params.colour[:, None, None, :]  # colour is per frame


def random_backgrounds(count: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """(count, S, S, 3) float: a muted tinted grey, a gradient at a random angle and soft blotches."""
    grid = (np.arange(size, dtype=np.float32) + 0.5) / size - 0.5
    xs, ys = grid[None, None, :], grid[None, :, None]
    base = rng.uniform(50, 200, (count, 1, 1, 1)) + rng.uniform(-25, 25, (count, 1, 1, 3))
    direction = rng.uniform(0, 2 * np.pi, (count, 1, 1))
    light = rng.uniform(-60, 60, (count, 1, 1)) * (np.cos(direction) * xs + np.sin(direction) * ys)
    for _ in range(3):
        cycles, heading = rng.uniform(1, 4, (count, 1, 1)) * 2 * np.pi, rng.uniform(0, 2 * np.pi, (count, 1, 1))
        phase = rng.uniform(0, 2 * np.pi, (count, 1, 1))
        wave = np.sin(cycles * (np.cos(heading) * xs + np.sin(heading) * ys) + phase)
        light = light + rng.uniform(0, 12, (count, 1, 1)) * wave
    return np.clip(base + light[..., None], 0, 255).astype(np.float32)


def composite(background: np.ndarray, coverage: np.ndarray, colour: np.ndarray) -> np.ndarray:
    return np.clip(background * (1 - coverage[..., None]) + colour, 0, 255).round().astype(np.uint8)


def _random_look(count: int, rng: np.random.Generator, colour_names: tuple[str, ...],
                 shape: int | None = None, colour_index: int | None = None) -> dict[str, np.ndarray]:
    """Shape, texture, jittered colour (index into ``colour_names``) and orientation; a given shape or
    colour replaces the drawn one (the draws still happen, so the other attributes do not shift)."""
    drawn_shape = rng.integers(0, len(SHAPES), count)
    drawn_colour = rng.integers(0, len(colour_names), count)
    shapes = drawn_shape if shape is None else np.full(count, shape)
    colours = drawn_colour if colour_index is None else np.full(count, colour_index)
    palette = np.array([COLOURS[name] for name in colour_names], np.float32)
    return {"shape": shapes, "texture": rng.integers(0, len(TEXTURES), count), "colour_index": colours,
            "angle": rng.uniform(0, 2 * np.pi, count),
            "colour": np.clip(palette[colours] + rng.uniform(-20, 20, (count, 3)), 0, 255)}


# ---------------------------------------------------------------------------------------------------
# Stills

@dataclass
class Stills:
    images: np.ndarray  # (N, S, S, 3) uint8
    labels: np.ndarray  # (N,) int64
    class_names: list[str]
    attributes: dict[str, np.ndarray]  # shape, colour_index, texture, x, y, radius per image


def make_stills(count: int, size: int = 32, seed: int = 0, position_grid: int = 1,
                chunk: int = 512) -> Stills:
    """Images of one object each for image pre-training, label = shape x colour (x grid cell).

    Objects sit anywhere at any scale and orientation, so the features must find an object wherever it
    is; ``position_grid`` > 1 also makes the coarse position part of the label (g x g cells), which
    pushes the features to keep *where* the object is, the cue that motion is made of.
    """
    if count < 1 or position_grid < 1:
        raise ValueError(f"make_stills: count ({count}) and position_grid ({position_grid}) must be >= 1")
    rng = np.random.default_rng([seed, 7])
    names = tuple(COLOURS)
    look = _random_look(count, rng, names)
    radius = rng.uniform(0.12, 0.3, count) * size
    x, y = rng.uniform(radius, size - radius), rng.uniform(radius, size - radius)
    backgrounds_seed = int(rng.integers(0, 2**63))
    images = np.empty((count, size, size, 3), np.uint8)
    for start in range(0, count, chunk):
        part = slice(start, min(start + chunk, count))
        params = ObjectParams(x[part], y[part], radius[part], look["angle"][part], np.ones(part.stop - start),
                              look["shape"][part], look["texture"][part], look["colour"][part])
        backgrounds = random_backgrounds(part.stop - start, size, np.random.default_rng([backgrounds_seed, start]))
        images[part] = composite(backgrounds, *render_objects(params, size))
    cell = (np.minimum(y * position_grid // size, position_grid - 1) * position_grid
            + np.minimum(x * position_grid // size, position_grid - 1)).astype(np.int64)
    labels = (look["shape"] * len(names) + look["colour_index"]) * position_grid**2 + cell
    class_list = [f"{colour} {shape}" + (f" @cell{c}" if position_grid > 1 else "")
                  for shape in SHAPES for colour in names for c in range(position_grid**2)]
    attributes = {"shape": look["shape"], "colour_index": look["colour_index"], "texture": look["texture"],
                  "x": x, "y": y, "radius": radius}
    return Stills(images, labels.astype(np.int64), class_list, attributes)


# ---------------------------------------------------------------------------------------------------
# Clips

def forward_path(pair: int, frames: int, size: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Per-frame x, y, radius, alpha of the first motion of ``MOTION_PAIRS[pair]``."""
    t = np.linspace(0, 1, frames)
    const = np.ones(frames)
    if pair in (0, 1):  # moving right / moving down: travel d along one axis
        radius = rng.uniform(0.12, 0.2) * size
        travel = rng.uniform(0.3, 0.5) * size
        start = rng.uniform(radius, size - radius - travel)
        across = rng.uniform(radius, size - radius)
        along = start + travel * t
        x, y = (along, across * const) if pair == 0 else (across * const, along)
        return {"x": x, "y": y, "radius": radius * const, "alpha": const}
    if pair == 2:  # approaching: grows from small to large
        small, large = rng.uniform(0.08, 0.12) * size, rng.uniform(0.25, 0.32) * size
        centre = rng.uniform(0.35, 0.65, 2) * size
        return {"x": centre[0] * const, "y": centre[1] * const, "radius": small + (large - small) * t,
                "alpha": const}
    if pair == 3:  # circling clockwise on screen (image y points down, so the angle increases)
        centre = size / 2 + rng.uniform(-0.08, 0.08, 2) * size
        orbit, radius = rng.uniform(0.2, 0.26) * size, rng.uniform(0.1, 0.14) * size
        angle = rng.uniform(0, 2 * np.pi) + rng.uniform(0.7, 1.2) * np.pi * t
        return {"x": centre[0] + orbit * np.cos(angle), "y": centre[1] + orbit * np.sin(angle),
                "radius": radius * const, "alpha": const}
    radius = rng.uniform(0.12, 0.22) * size  # appearing: fades in where it stands
    return {"x": rng.uniform(radius, size - radius) * const, "y": rng.uniform(radius, size - radius) * const,
            "radius": radius * const, "alpha": t}


def make_clip(task: str, label: int, frames: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """(frames, S, S, 3) uint8 clip of class ``label`` of ``task``."""
    if task == "synth_motion":
        pair, reverse = divmod(label, 2)
        look = _random_look(1, rng, tuple(COLOURS))
    else:
        pair, reverse = int(rng.integers(0, len(MOTION_PAIRS))), int(rng.integers(0, 2))
        shape, colour_index = divmod(label, len(APPEARANCE_COLOURS))
        look = _random_look(1, rng, APPEARANCE_COLOURS, shape, colour_index)
    path = forward_path(pair, frames, size, rng)
    every = np.ones(frames)
    params = ObjectParams(path["x"], path["y"], path["radius"], look["angle"][0] * every, path["alpha"],
                          (look["shape"][0] * every).astype(int), (look["texture"][0] * every).astype(int),
                          np.repeat(look["colour"], frames, axis=0))
    clip = composite(random_backgrounds(1, size, rng), *render_objects(params, size))
    return clip[::-1].copy() if reverse else clip


LOSSLESS_H264 = {"qp": "0", "preset": "ultrafast", "threads": "1"}  # one thread: reproducible bytes


def write_video(path: Path, clip: np.ndarray, fps: int, codec: str = "libx264", pix_fmt: str = "yuv444p",
                options: dict[str, str] | None = None) -> None:
    """Encode (T, H, W, 3) uint8 frames with PyAV; by default lossless h264 in yuv444, which decord reads."""
    try:
        with av.open(str(path), "w") as container:
            stream = container.add_stream(codec, rate=fps)
            stream.width, stream.height, stream.pix_fmt = int(clip.shape[2]), int(clip.shape[1]), pix_fmt
            stream.options = LOSSLESS_H264 if options is None else options
            for frame in clip:
                container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
            container.mux(stream.encode())
    except av.error.ArgumentError as err:
        raise RuntimeError(f"{codec} encoder would not open for {path}: {err}. If decord was imported before "
                           "PyAV, its bundled FFmpeg shadows PyAV's; import bench.data (or av) first") from err


def check_decodable(path: Path, config: SynthConfig) -> None:
    """decord 0.6 returns malformed frames for a few widths (16, 24, 48, 72 px): refuse those sizes early."""
    try:
        shape = decord.VideoReader(str(path), num_threads=1).get_batch([0]).shape
    except Exception as err:  # decord raises its own error type on these widths
        shape = (type(err).__name__,)
    if tuple(shape) != (1, config.size, config.size, 3):
        raise SynthConfigError(f"SynthConfig.size: decord cannot read {config.size} px videos correctly "
                               f"(got {tuple(shape)}); use another size such as 32, 40, 56 or 64")


def synthetic_dir(task: str, config: SynthConfig, root: str | Path | None = None) -> Path:
    return Path(root or cache_root()).expanduser() / "synth" / f"{task}-{config.digest(task)}"


def ensure_synthetic(task: str, config: SynthConfig | None = None, root: str | Path | None = None,
                     progress: bool = True) -> Path:
    """The directory of ``task`` for ``config`` (list files + classes.txt + videos), generated on first use.

    Generation happens in a private temporary directory renamed into place at the end, so concurrent
    runs never see half-written data: the first rename wins and the others discard their copy.
    """
    config = config or SynthConfig()
    names = class_names(task)
    final = synthetic_dir(task, config, root)
    if final.is_dir():
        return final
    with atomic_directory(final) as work:
        for split_id, (split, per_class) in enumerate((("train", config.train_per_class),
                                                       ("val", config.val_per_class))):
            folder = work / "videos" / split
            folder.mkdir(parents=True)
            entries = []
            count = per_class * len(names)
            for i in progress_bar(range(count), desc=f"generating {task} {split}", disable=not progress, leave=False):
                label = i % len(names)
                rng = np.random.default_rng([config.seed, TASKS.index(task), split_id, i])
                path = folder / f"{i:06d}.mp4"
                write_video(path, make_clip(task, label, config.frames, config.size, rng), config.fps)
                entries.append(VideoEntry(path, label))
            write_list(work / f"{split}.txt", entries, root=work)
        check_decodable(work / "videos" / "train" / f"{0:06d}.mp4", config)
        write_text_atomic(work / "classes.txt", "".join(f"{name}\n" for name in names))
        write_text_atomic(work / "config.json", json.dumps(
            {"task": task, "version": GENERATOR_VERSION, **dataclasses.asdict(config)}, indent=2) + "\n")
    return final
