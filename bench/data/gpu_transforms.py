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
from dataclasses import dataclass

import torch
from timm.data.auto_augment import rand_augment_transform

from .gpu_augment import apply_rand_augment, rand_augment_ops, to_device
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
    clip's true size in ``sizes``; everything else collated as the DataLoader would. In a loader
    worker the batch is built in shared memory, as ``default_collate`` does, so handing it to the
    main process copies nothing more."""
    from torch.utils.data import default_collate, get_worker_info
    frames = [s["frames"] for s in samples]
    height = max(f.shape[-3] for f in frames)
    width = max(f.shape[-2] for f in frames)
    shape = (len(frames), *frames[0].shape[:-3], height, width, 3)
    if get_worker_info() is not None:
        storage = frames[0].untyped_storage()._new_shared(math.prod(shape))
        out = frames[0].new(storage).view(shape)
    else:
        out = frames[0].new_empty(shape)
    if all(f.shape == shape[1:] for f in frames):
        torch.stack(frames, out=out)
    else:
        out.zero_()
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
    return to_device(matrix, device), precision


@dataclass(frozen=True)
class AxisPlan:
    """Along one axis of one clip: read ``length`` pixels from ``start``, resize them to ``resized``,
    keep the windows of ``size`` starting at ``windows`` (reversed if ``flip``)."""

    start: int
    length: int
    resized: int
    windows: tuple[int, ...]
    flip: bool = False


def _axis_matrix(plans: list[AxisPlan], canvas: int, size: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, canvas, windows x size) weights and (B,) precisions: the uint8 resize and the crop of every
    clip along one axis as one matrix, so a batch needs one product per axis (a column of the resized
    image depends on its own weights only, so cropping the weights crops the image exactly)."""
    count = max(len(p.windows) for p in plans)
    matrix = torch.zeros(len(plans), canvas, count * size, dtype=torch.float64, device=device)
    precisions = []
    for i, plan in enumerate(plans):
        weights, precision = uint8_resize_weights(plan.length, plan.resized, device)
        precisions.append(precision)
        for k, window in enumerate(plan.windows):
            part = weights[:, window:window + size]
            matrix[i, plan.start:plan.start + plan.length, k * size:(k + 1) * size] = part.flip(1) if plan.flip else part
    return matrix, to_device(precisions, device)


def _resize_pass(x: torch.Tensor, matrix: torch.Tensor, precisions: torch.Tensor) -> torch.Tensor:
    """x (B, N, L) @ (B, L, M) in the uint8 resize's fixed point: integer sums, rounded, shifted, saturated."""
    scale = torch.pow(2.0, precisions.double()).view(-1, 1, 1)
    total = torch.bmm(x.double(), matrix) + scale / 2
    return torch.floor(total / scale).clamp_(0, 255).to(x.dtype)


def resize_crop(x: torch.Tensor, rows: list[AxisPlan], columns: list[AxisPlan], size: int) -> torch.Tensor:
    """x (B, N, H, W) levels -> (B, N, rows' windows x size, columns' windows x size): each clip resized and
    cropped as torch's CPU uint8 resize would (horizontal pass, uint8 in between, vertical pass)."""
    batch, planes, height, width = x.shape
    matrix, precisions = _axis_matrix(columns, width, size, x.device)
    x = _resize_pass(x.reshape(batch, planes * height, width), matrix, precisions)
    out_width = x.shape[-1]
    x = x.view(batch, planes, height, out_width).transpose(2, 3).reshape(batch, planes * out_width, height)
    matrix, precisions = _axis_matrix(rows, height, size, x.device)
    x = _resize_pass(x, matrix, precisions)
    return x.view(batch, planes, out_width, -1).transpose(2, 3)


class DeviceClipTransform:
    """``ClipTransform(spec, train)`` for batches from ``collate_frames``, on the frames' device."""

    def __init__(self, spec: ClipSpec, train: bool):
        self.spec, self.train = spec, train
        self.mean = torch.tensor(spec.mean).view(1, 3, 1, 1, 1) * 255
        self.std = torch.tensor(spec.std).view(1, 3, 1, 1, 1) * 255
        self.rand_augment, self.fill = None, (0, 0, 0)
        if train and spec.augment == "ssv2":
            hparams = rand_augment_hparams(spec)
            self.rand_augment = rand_augment_transform(spec.rand_augment, hparams)
            self.fill = hparams["img_mean"]

    def __call__(self, batch: dict) -> torch.Tensor:
        """(B, 3, T, S, S) in training, (B, views x crops, 3, T, S, S) at test; float32, normalised.

        ``sizes`` and ``draw`` stay on the host (a copy of them to the device would wait for it)."""
        frames, sizes = batch["frames"], batch["sizes"]
        x = frames.permute(0, 1, 2, 5, 3, 4).float()  # (B, V, T, 3, H, W) levels
        if self.train:
            return self._train(x[:, 0], sizes.tolist(), [unpack_draw(row) for row in batch["draw"].tolist()])
        return self._test(x, sizes.tolist())

    def _train(self, x: torch.Tensor, sizes: list[list[int]], draws: list[TrainDraw]) -> torch.Tensor:
        batch, frames = x.shape[:2]
        size = self.spec.input_size
        if self.rand_augment is not None:
            ops = [[] if d.rand_augment_seed is None else rand_augment_ops(self.rand_augment, d.rand_augment_seed)
                   for d in draws]
            x = apply_rand_augment(x, sizes, ops, self.fill)
        rows, columns = [], []
        for (height, width), draw in zip(sizes, draws):
            top, left, box_h, box_w = draw.box
            if draw.short_side:  # resize the whole frame, then crop
                resized_h, resized_w = resized_shape(height, width, draw.short_side)
                rows.append(AxisPlan(0, height, resized_h, (top,)))
                columns.append(AxisPlan(0, width, resized_w, (left,), draw.flip))
            else:  # crop the box, then resize it to the input size
                rows.append(AxisPlan(top, box_h, size, (0,)))
                columns.append(AxisPlan(left, box_w, size, (0,), draw.flip))
        out = resize_crop(x.flatten(1, 2), rows, columns, size).view(batch, frames, 3, size, size)
        return self._normalise(out)

    def _test(self, x: torch.Tensor, sizes: list[list[int]]) -> torch.Tensor:
        batch, views, frames = x.shape[:3]
        size, crops = self.spec.input_size, self.spec.test_crops
        rows, columns = [], []
        for height, width in sizes:
            resized_h, resized_w = resized_shape(height, width, size)
            offsets = spatial_crop_offsets(resized_h, resized_w, size, crops)
            rows.append(AxisPlan(0, height, resized_h, tuple(top for top, _ in offsets)))
            columns.append(AxisPlan(0, width, resized_w, tuple(left for _, left in offsets)))
        grid = resize_crop(x.flatten(1, 3), rows, columns, size)  # crop k is block (k, k) of the grid
        grid = grid.view(batch, views, frames, 3, crops, size, crops, size)
        out = torch.stack([grid[:, :, :, :, k, :, k] for k in range(crops)], dim=2)  # (B, V, crops, T, 3, S, S)
        return self._normalise(out.flatten(0, 2)).unflatten(0, (batch, views * crops))

    def _normalise(self, frames: torch.Tensor) -> torch.Tensor:
        """(N, T, 3, S, S) levels -> (N, 3, T, S, S), CLIP-normalised."""
        mean, std = self.mean.to(frames.device), self.std.to(frames.device)
        return ((frames.transpose(1, 2) - mean) / std).contiguous()
