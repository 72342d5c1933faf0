"""The recipe's transforms on the training device: loader workers decode and draw, the GPU resizes and augments.

With ``VideoDataset(..., device_transforms=True)`` a worker returns the decoded uint8 frames and the
clip's random draws (``TrainDraw``, packed by ``pack_draw``) instead of a normalised float clip:
a quarter of the bytes to move between processes and none of the resize, RandAugment and
normalisation CPU time (results/perf/NOTES.md measures both). ``DeviceClipTransform`` then applies
exactly ``ClipTransform``'s operations, in its order and with its draws, to a batch on any device:
RandAugment op for op (``gpu_augment``), antialiased bicubic resizes in the fixed-point arithmetic of
torch's uint8 CPU resize (the CPU path resizes uint8 frames), crop, flip and CLIP normalisation. Tests hold it equal to the
CPU path on the same draws, up to rounding, for both recipes; on CPU tensors in CI and on CUDA.
"""
from __future__ import annotations

import functools
import math

import torch
from timm.data.auto_augment import rand_augment_transform

from .gpu_augment import apply_rand_augment, rand_augment_ops
from .spec import ClipSpec
from .transforms import TrainDraw, rand_augment_hparams, resized_shape, spatial_crop_offsets

DRAW_FIELDS = 7  # short_side, top, left, height, width, flip, rand_augment_seed (-1: none)


def pack_draw(draw: TrainDraw) -> torch.Tensor:
    """A TrainDraw as an int64 vector, so the DataLoader's collate stacks a batch of them."""
    seed = -1 if draw.rand_augment_seed is None else draw.rand_augment_seed
    return torch.tensor([draw.short_side, *draw.box, int(draw.flip), seed], dtype=torch.int64)


def unpack_draw(row: list[int]) -> TrainDraw:
    short, top, left, height, width, flip, seed = row
    return TrainDraw(short, (top, left, height, width), bool(flip), None if seed < 0 else seed)


def collate_frames(samples: list[dict]) -> dict:
    """Batch uint8 clips of different sizes: frames zero-padded to the batch's largest (H, W), with each
    clip's true size in ``sizes``; everything else collated as the DataLoader would."""
    from torch.utils.data import default_collate
    frames = [s["frames"] for s in samples]
    height = max(f.shape[-3] for f in frames)
    width = max(f.shape[-2] for f in frames)
    out = frames[0].new_zeros((len(frames), *frames[0].shape[:-3], height, width, 3))
    for i, f in enumerate(frames):
        out[i, ..., :f.shape[-3], :f.shape[-2], :] = f
    rest = default_collate([{k: v for k, v in s.items() if k != "frames"} for s in samples])
    return {**rest, "frames": out, "sizes": torch.tensor([f.shape[-3:-1] for f in frames])}


def _cubic_aa(x: float, a: float = -0.5) -> float:
    x = abs(x)
    if x < 1:
        return ((a + 2) * x - (a + 3)) * x * x + 1
    if x < 2:
        return (((x - 5) * x + 8) * x - 4) * a
    return 0.0


@functools.lru_cache(maxsize=512)
def uint8_resize_weights(in_size: int, out_size: int, device: torch.device) -> tuple[torch.Tensor, int]:
    """(in_size, out_size) int16-valued weights and their fixed-point precision, as torch's CPU uint8
    antialiased bicubic resize computes them (Pillow's resampling: a = -0.5, support 2 x scale)."""
    scale = in_size / out_size
    support = 2.0 * scale if scale >= 1.0 else 2.0
    inverse = 1.0 / scale if scale >= 1.0 else 1.0
    rows = []
    for i in range(out_size):
        centre = scale * (i + 0.5)
        low = max(int(centre - support + 0.5), 0)
        high = min(int(centre + support + 0.5), in_size)
        taps = [_cubic_aa((j + low - centre + 0.5) * inverse) for j in range(high - low)]
        total = sum(taps)
        rows.append((low, [t / total if total != 0 else t for t in taps]))
    largest = max(w for _, taps in rows for w in taps)
    precision = 0
    while precision < 22 and int(0.5 + largest * (1 << (precision + 1))) < (1 << 15):
        precision += 1
    matrix = torch.zeros(in_size, out_size, dtype=torch.float64)
    for i, (low, taps) in enumerate(rows):
        for j, w in enumerate(taps):
            v = w * (1 << precision)
            matrix[low + j, i] = math.trunc(v - 0.5 if v < 0 else v + 0.5)
    return matrix.to(device), precision


def _resize_axis(frames: torch.Tensor, out_size: int) -> torch.Tensor:
    """One pass of the uint8 resize along the last axis: integer weights, rounded, shifted, saturated."""
    matrix, precision = uint8_resize_weights(frames.shape[-1], out_size, frames.device)
    total = frames.double() @ matrix + (1 << (precision - 1))
    return torch.floor(total / (1 << precision)).clamp_(0, 255).to(frames.dtype)


def resize_levels(frames: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Antialiased bicubic resize of (N, 3, H, W) uint8 levels (held as float) to ``size``, computed as the
    CPU's uint8 resize computes it (horizontal pass, uint8 in between, vertical pass), so equal to it."""
    height, width = size
    if frames.shape[-1] != width:
        frames = _resize_axis(frames, width)
    if frames.shape[-2] != height:
        frames = _resize_axis(frames.transpose(-1, -2), height).transpose(-1, -2)
    return frames


class DeviceClipTransform:
    """``ClipTransform(spec, train)`` for batches from ``collate_frames``, on the frames' device."""

    def __init__(self, spec: ClipSpec, train: bool):
        self.spec, self.train = spec, train
        self.mean = torch.tensor(spec.mean).view(1, 3, 1, 1) * 255
        self.std = torch.tensor(spec.std).view(1, 3, 1, 1) * 255
        self.rand_augment, self.fill = None, (0, 0, 0)
        if train and spec.augment == "ssv2":
            hparams = rand_augment_hparams(spec)
            self.rand_augment = rand_augment_transform(spec.rand_augment, hparams)
            self.fill = hparams["img_mean"]

    def __call__(self, batch: dict) -> torch.Tensor:
        """(B, 3, T, S, S) in training, (B, views x crops, 3, T, S, S) at test; float32, normalised."""
        frames, sizes = batch["frames"], batch["sizes"].tolist()
        if self.train:
            draws = batch["draw"].tolist()
            return torch.stack([self.augment(frames[i, 0, :, :h, :w], unpack_draw(draws[i]))
                                for i, (h, w) in enumerate(sizes)])
        return torch.stack([self.test_views(frames[i, ..., :h, :w, :]) for i, (h, w) in enumerate(sizes)])

    def _levels(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 (T, H, W, 3) -> float (T, 3, H, W) holding the same levels."""
        return frames.permute(0, 3, 1, 2).float()

    def augment(self, clip: torch.Tensor, draw: TrainDraw) -> torch.Tensor:
        """One training clip, uint8 (T, H, W, 3) -> normalised (3, T, S, S)."""
        size = self.spec.input_size
        frames = self._levels(clip)
        if draw.rand_augment_seed is not None:
            frames = apply_rand_augment(frames, rand_augment_ops(self.rand_augment, draw.rand_augment_seed),
                                        self.fill)
        if draw.short_side:
            frames = resize_levels(frames, resized_shape(*frames.shape[-2:], draw.short_side))
        top, left, height, width = draw.box
        frames = resize_levels(frames[..., top:top + height, left:left + width], (size, size))
        return self._normalise(frames.flip(-1) if draw.flip else frames)

    def test_views(self, views: torch.Tensor) -> torch.Tensor:
        """One test sample, uint8 (V, T, H, W, 3) -> normalised (V x crops, 3, T, S, S), temporal view major."""
        size = self.spec.input_size
        count, frames_per_view = views.shape[:2]
        frames = self._levels(views.flatten(0, 1))
        frames = resize_levels(frames, resized_shape(*frames.shape[-2:], size)).unflatten(0, (count, frames_per_view))
        offsets = spatial_crop_offsets(*frames.shape[-2:], size, self.spec.test_crops)
        return torch.stack([self._normalise(view[..., top:top + size, left:left + size])
                            for view in frames for top, left in offsets])

    def _normalise(self, frames: torch.Tensor) -> torch.Tensor:
        """(T, 3, S, S) levels -> (3, T, S, S), CLIP-normalised."""
        mean, std = self.mean.to(frames.device), self.std.to(frames.device)
        return ((frames - mean) / std).transpose(0, 1).contiguous()

