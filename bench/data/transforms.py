"""Clip transforms of the matched recipe (DESIGN §4): one random draw shared by every frame of a clip.

Frames arrive as uint8 (views, T, H, W, 3) from the decoder and leave CLIP-normalised as float
(3, T, S, S) in training or (views x crops, 3, T, S, S) at test. They stay uint8 (channels-last)
until normalisation: torch's uint8 bicubic resize is about 6x faster than the float one on CPU, and
the loader's CPU time is what the data pipeline is about. All randomness comes from the numpy
Generator passed in, so a sample's augmentation depends only on (seed, epoch, index).
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from timm.data.auto_augment import rand_augment_transform

from .spec import ClipSpec


def resized_shape(height: int, width: int, size: int) -> tuple[int, int]:
    """The shape ``resize_short_side`` gives (H, W) frames for short side ``size``."""
    scale = size / min(height, width)
    return max(size, round(height * scale)), max(size, round(width * scale))


def resize_short_side(frames: torch.Tensor, size: int) -> torch.Tensor:
    """Bicubic (antialiased) resize of (N, 3, H, W) uint8 frames so that min(H, W) == size."""
    target = resized_shape(*frames.shape[-2:], size)
    if target == tuple(frames.shape[-2:]):
        return frames
    return F.interpolate(frames, size=target, mode="bicubic", align_corners=False, antialias=True)


def crop(frames: torch.Tensor, top: int, left: int, height: int, width: int) -> torch.Tensor:
    return frames[..., top:top + height, left:left + width]


def spatial_crop_offsets(height: int, width: int, size: int, crops: int) -> list[tuple[int, int]]:
    """Centre crop, or three crops at the start, centre and end of the long side."""
    centre = ((height - size) // 2, (width - size) // 2)
    if crops == 1:
        return [centre]
    if height > width:
        return [(0, centre[1]), centre, (height - size, centre[1])]
    return [(centre[0], 0), centre, (centre[0], width - size)]


def random_resized_crop_box(height: int, width: int, scale: tuple[float, float], rng: np.random.Generator,
                            ratio: tuple[float, float] = (3 / 4, 4 / 3), attempts: int = 10) -> tuple[int, int, int, int]:
    """(top, left, h, w) of a crop covering a random fraction ``scale`` of the area at a random aspect ratio
    (Inception-style); after ``attempts`` misses, the largest centred crop with a ratio inside ``ratio``."""
    area = height * width
    for _ in range(attempts):
        target_area = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1])))
        w, h = round(math.sqrt(target_area * aspect)), round(math.sqrt(target_area / aspect))
        if 0 < w <= width and 0 < h <= height:
            return int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1)), h, w
    aspect = width / height
    if aspect < ratio[0]:
        w, h = width, round(width / ratio[0])
    elif aspect > ratio[1]:
        h, w = height, round(height * ratio[1])
    else:
        h, w = height, width
    return (height - h) // 2, (width - w) // 2, h, w


def rand_augment_hparams(spec: ClipSpec) -> dict:
    """timm's RandAugment settings for the recipe: translations relative to the crop size, CLIP-mean fill."""
    return {"translate_const": int(spec.input_size * 0.45),
            "img_mean": tuple(round(255 * m) for m in spec.mean),
            "interpolation": Image.BICUBIC}


def apply_to_every_frame(op, images: list[Image.Image], seed: int) -> list[Image.Image]:
    """Apply a transform driven by the global ``random``/``np.random`` (timm's RandAugment) with the same
    draws on every frame: both generators are reseeded identically before each frame, then restored.

    Replaying the generators picks the same ops and magnitudes for all frames while keeping the
    geometric ops frame-local (a frame mosaic would rotate, shear and translate the whole mosaic).
    """
    python_state, numpy_state = random.getstate(), np.random.get_state()
    try:
        out = []
        for image in images:
            random.seed(seed)
            np.random.seed(seed)
            out.append(op(image))
        return out
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)


@dataclass(frozen=True)
class TrainDraw:
    """The random choices of one training clip, shared by all its frames: drawn in a loader worker,
    applied there (``ClipTransform``) or on the GPU (``bench.data.gpu_transforms``) alike.

    ``short_side``: the K400 jitter (0: no resize before the crop). ``box``: (top, left, h, w) in the
    resized (K400) or RandAugmented (SSv2) frame. ``rand_augment_seed``: replayed per frame (None: none).
    """

    short_side: int
    box: tuple[int, int, int, int]
    flip: bool
    rand_augment_seed: int | None = None


class ClipTransform:
    """Train augmentation or test views of one ClipSpec."""

    def __init__(self, spec: ClipSpec, train: bool):
        self.spec, self.train = spec, train
        self.mean = torch.tensor(spec.mean).view(3, 1, 1, 1) * 255
        self.std = torch.tensor(spec.std).view(3, 1, 1, 1) * 255
        self.rand_augment = None
        if train and spec.augment == "ssv2":
            self.rand_augment = rand_augment_transform(spec.rand_augment, rand_augment_hparams(spec))

    def __call__(self, frames: np.ndarray, rng: np.random.Generator | None = None) -> torch.Tensor:
        if self.train:
            if rng is None:
                raise ValueError("training transforms need a numpy Generator")
            return self._normalise(self._augment(frames[0], self.draw(*frames.shape[2:4], rng)))
        return torch.stack([self._normalise(view) for view in self._test_views(frames)])

    def draw(self, height: int, width: int, rng: np.random.Generator) -> TrainDraw:
        """The clip's random choices for (height, width) frames, in the order the recipe has always drawn them."""
        size, spec = self.spec.input_size, self.spec
        if spec.augment == "ssv2":
            seed = int(rng.integers(0, 2**31))
            return TrainDraw(0, random_resized_crop_box(height, width, spec.crop_scale, rng), False, seed)
        if spec.augment == "none":
            height, width = resized_shape(height, width, size)
            return TrainDraw(size, (*spatial_crop_offsets(height, width, size, 1)[0], size, size), False)
        short = int(rng.integers(spec.short_side_range[0], spec.short_side_range[1] + 1))
        height, width = resized_shape(height, width, short)
        top, left = int(rng.integers(0, height - size + 1)), int(rng.integers(0, width - size + 1))
        return TrainDraw(short, (top, left, size, size), rng.random() < 0.5)

    def _augment(self, clip: np.ndarray, draw: TrainDraw) -> torch.Tensor:
        """(T, H, W, 3) -> (T, 3, S, S), uint8."""
        size = self.spec.input_size
        if draw.rand_augment_seed is not None:
            clip = np.stack([np.asarray(image) for image in apply_to_every_frame(
                self.rand_augment, [Image.fromarray(frame) for frame in clip], draw.rand_augment_seed)])
        frames = torch.from_numpy(clip).permute(0, 3, 1, 2)
        if draw.short_side:
            frames = resize_short_side(frames, draw.short_side)
        frames = crop(frames, *draw.box)
        if frames.shape[-2:] != (size, size):
            frames = F.interpolate(frames, size=(size, size), mode="bicubic", align_corners=False, antialias=True)
        return frames.flip(-1) if draw.flip else frames

    def _test_views(self, views: np.ndarray) -> list[torch.Tensor]:
        """(V, T, H, W, 3) -> V x crops tensors (T, 3, S, S), temporal view major."""
        size = self.spec.input_size
        count, frames_per_view = views.shape[:2]
        frames = torch.from_numpy(views.reshape(-1, *views.shape[2:])).permute(0, 3, 1, 2)
        frames = resize_short_side(frames, size).unflatten(0, (count, frames_per_view))
        offsets = spatial_crop_offsets(*frames.shape[-2:], size, self.spec.test_crops)
        return [crop(view, top, left, size, size) for view in frames for top, left in offsets]

    def _normalise(self, frames: torch.Tensor) -> torch.Tensor:
        """(T, 3, S, S) uint8 -> (3, T, S, S) float, CLIP-normalised."""
        out = frames.permute(1, 0, 2, 3).to(torch.float32, memory_format=torch.contiguous_format)
        return out.sub_(self.mean).div_(self.std)
