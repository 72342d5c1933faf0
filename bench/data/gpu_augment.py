"""timm's RandAugment, op for op, on a batch of clips: the same draws as the PIL path, the same pixels.

``rand_augment_ops`` runs timm's own ``RandAugment.__call__`` with every op's image function swapped
for a recorder, under the generator reseeding of ``transforms.apply_to_every_frame``, so the op
names and arguments are timm's draws, not a re-implementation of them. ``apply_rand_augment`` then
applies the ops of every clip of a batch: at each op position the clips are grouped by op family
(look-up tables, affine warps, blends), so a batch costs a few hundred kernel launches whatever
its size, and every frame of a clip gets the same op. Each op follows Pillow's C code
(``ImageOps``, ``ImageEnhance``, ``Image.transform`` with bicubic resampling): the same tables,
fixed-point greyscale, float32 blends truncated to uint8, the affine bicubic filter's kernel, edge
clamping and fill, in Pillow's order of float operations; tests hold each op equal to Pillow.

Clips are (n, T, 3, H, W) float tensors holding uint8 levels, zero-padded to a common canvas; each
clip's true (height, width) comes with it and bounds every op (histograms, means, edges, fill).
"""
from __future__ import annotations

import copy
import math
import random
from typing import Callable

import numpy as np
import torch

from methods.kernels import HAS_TRITON

from .affine_kernel import affine_triton

Op = tuple[str, tuple]
LUT_OPS = ("Invert", "PosterizeIncreasing", "SolarizeIncreasing", "SolarizeAdd")
HISTOGRAM_OPS = ("AutoContrast", "Equalize")
AFFINE_OPS = ("Rotate", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel")
BLEND_OPS = ("ColorIncreasing", "ContrastIncreasing", "BrightnessIncreasing", "SharpnessIncreasing")


def _recorder(name: str) -> Callable:
    def record(calls: list, *args, **_kwargs) -> list:
        calls.append((name, tuple(args)))
        return calls
    return record


def rand_augment_ops(rand_augment, seed: int) -> list[Op]:
    """The (op name, level arguments) timm's ``rand_augment`` applies under ``seed`` (as
    ``apply_to_every_frame`` seeds it), in order; ops skipped by their probability are absent."""
    recording = copy.copy(rand_augment)
    recording.ops = []
    for op in rand_augment.ops:
        if isinstance(op.kwargs.get("resample"), (list, tuple)):
            raise ValueError("a random resampling filter is drawn inside the op; give RandAugment a fixed one")
        twin = copy.copy(op)
        twin.aug_fn = _recorder(op.name)
        recording.ops.append(twin)
    python_state, numpy_state = random.getstate(), np.random.get_state()
    try:
        random.seed(seed)
        np.random.seed(seed)
        return recording([])
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)


def to_device(values, device: torch.device) -> torch.Tensor:
    """A small host array on ``device`` without waiting for the device (pinned memory, asynchronous copy);
    the plain copy of pageable memory would wait for all work queued on the stream."""
    tensor = torch.as_tensor(np.asarray(values))
    if device.type != "cuda":
        return tensor.to(device)
    return tensor.pin_memory().to(device, non_blocking=True)


# -- Look-up tables ---------------------------------------------------------------------------------

def static_lut(name: str, args: tuple) -> np.ndarray:
    """The 256-entry table of an op that depends on its argument only (ImageOps / timm's solarize_add)."""
    levels = np.arange(256)
    if name == "Invert":
        return 255 - levels
    if name == "PosterizeIncreasing":
        bits = int(args[0])
        return levels if bits >= 8 else levels & (~(2 ** (8 - bits) - 1) & 0xFF)
    if name == "SolarizeIncreasing":
        return np.where(levels < args[0], levels, 255 - levels)
    if name == "SolarizeAdd":
        threshold = args[1] if len(args) > 1 else 128
        return np.where(levels < threshold, np.minimum(255, levels + args[0]), levels)
    raise ValueError(f"{name} has no static table")


def _valid(x: torch.Tensor, sizes: torch.Tensor) -> torch.Tensor:
    """(n, 1, 1, H, W) bool: inside each clip's true (height, width)."""
    rows = torch.arange(x.shape[-2], device=x.device).view(1, -1, 1) < sizes[:, 0].view(-1, 1, 1)
    cols = torch.arange(x.shape[-1], device=x.device).view(1, 1, -1) < sizes[:, 1].view(-1, 1, 1)
    return (rows & cols)[:, None, None]


def _apply_luts(x: torch.Tensor, luts: torch.Tensor) -> torch.Tensor:
    """x (n, T, 3, H, W) through per (clip, frame, channel) tables ``luts`` (n, T, 3, 256)."""
    groups = torch.arange(luts[..., 0].numel(), device=x.device).view(*luts.shape[:3], 1, 1) * 256
    return luts.reshape(-1)[x.long() + groups].to(x.dtype)


def _histograms(x: torch.Tensor, sizes: torch.Tensor) -> torch.Tensor:
    """(n, T, 3, 256) counts over each clip's true area (padding falls in a dropped 257th bin)."""
    groups = torch.arange(x[..., 0, 0].numel(), device=x.device).view(*x.shape[:3], 1, 1) * 257
    index = (torch.where(_valid(x, sizes), x.long(), 256) + groups).flatten()
    counts = torch.zeros(groups.numel() * 257, dtype=torch.int64, device=x.device)  # not bincount: it syncs on CUDA
    counts.scatter_add_(0, index, torch.ones(1, dtype=torch.int64, device=x.device).expand_as(index))
    return counts.view(*x.shape[:3], 257)[..., :256]


def auto_contrast_luts(counts: torch.Tensor) -> torch.Tensor:
    """ImageOps.autocontrast: stretch [lowest, highest] used level to [0, 255], truncating."""
    used = counts > 0
    levels = torch.arange(256, device=counts.device, dtype=torch.float64)
    low = used.int().argmax(-1, keepdim=True).double()
    high = 255 - used.flip(-1).int().argmax(-1, keepdim=True).double()
    scale = torch.full_like(low, 255.0) / (high - low).clamp(min=1)  # true division (scalar / tensor is not)
    lut = torch.trunc(levels * scale - low * scale).clamp(0, 255)
    return torch.where(high > low, lut, levels)


def equalize_luts(counts: torch.Tensor) -> torch.Tensor:
    """ImageOps.equalize: Pillow's integer cumulative-histogram table."""
    levels = torch.arange(256, device=counts.device)
    used = counts > 0
    top = 255 - used.flip(-1).int().argmax(-1, keepdim=True)
    step = (counts.sum(-1, keepdim=True) - counts.gather(-1, top)) // 255
    lut = (step // 2 + counts.cumsum(-1) - counts) // step.clamp(min=1)
    identity = (used.sum(-1, keepdim=True) <= 1) | (step == 0)
    return torch.where(identity, levels, lut).clamp(max=255).double()


# -- Blends -----------------------------------------------------------------------------------------

def _grey(x: torch.Tensor) -> torch.Tensor:
    """Pillow's RGB -> L: ITU-R 601-2 weights in 16-bit fixed point, rounded. (n, T, 1, H, W)."""
    r, g, b = x.long().unbind(2)
    return ((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16).unsqueeze(2).to(x.dtype)


def _smooth(x: torch.Tensor, sizes: torch.Tensor) -> torch.Tensor:
    """ImageFilter.SMOOTH summed as Pillow's 3x3 filter sums it (float32 weights 1/13 and 5/13, rows
    y+1, y, y-1, then +0.5 and truncation); each clip's border pixels keep their values."""
    side, centre = torch.tensor(1 / 13, dtype=torch.float32), torch.tensor(5 / 13, dtype=torch.float32)
    pixels = x.to(torch.float32)

    def row(y: slice, middle: torch.Tensor) -> torch.Tensor:
        r = pixels[..., y, :]
        return r[..., :-2] * side + r[..., 1:-1] * middle + r[..., 2:] * side

    total = torch.full_like(pixels[..., 1:-1, 1:-1], 0.5)
    total = total + row(slice(2, None), side)
    total = total + row(slice(1, -1), centre)
    total = total + row(slice(None, -2), side)
    smooth = x.clone()
    smooth[..., 1:-1, 1:-1] = torch.trunc(total.clamp(0, 255)).to(x.dtype)
    interior = _valid(x, sizes - 1) & (torch.arange(x.shape[-2], device=x.device).view(-1, 1) >= 1) \
        & (torch.arange(x.shape[-1], device=x.device).view(1, -1) >= 1)
    return torch.where(interior, smooth, x)


def _degenerate(name: str, x: torch.Tensor, sizes: torch.Tensor) -> torch.Tensor:
    if name == "ColorIncreasing":
        return _grey(x)
    if name == "ContrastIncreasing":  # int(mean + 0.5) of the greyscale frame, over the true area
        grey, valid = _grey(x).double(), _valid(x, sizes)
        area = valid.sum(dim=(-2, -1), keepdim=True)
        mean = torch.where(valid, grey, 0).sum(dim=(-2, -1), keepdim=True) / area
        return torch.floor(mean + 0.5).to(x.dtype)
    if name == "BrightnessIncreasing":
        return torch.zeros((), dtype=x.dtype, device=x.device)
    return _smooth(x, sizes)


def blend(degenerate: torch.Tensor, x: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    """Image.blend(degenerate, image, factor) per clip: float32 arithmetic, truncated to uint8 (clipped
    when extrapolating); factor 1 gives the image back exactly, as Pillow's shortcut does."""
    alpha = factors.to(torch.float32).view(-1, 1, 1, 1, 1)
    low = degenerate.to(torch.float32)
    out = low + alpha * (x.to(torch.float32) - low)
    return torch.trunc(out.clamp(0, 255)).to(x.dtype)


# -- Affine warps -----------------------------------------------------------------------------------

def affine_matrix(name: str, args: tuple, height: int, width: int) -> tuple[float, ...] | None:
    """The inverse matrix Pillow samples with (None: Pillow copies the image for this rotation)."""
    value = args[0]
    if name == "ShearX":
        return (1, value, 0, 0, 1, 0)
    if name == "ShearY":
        return (1, 0, 0, value, 1, 0)
    if name == "TranslateXRel":
        return (1, 0, value * width, 0, 1, 0)
    if name == "TranslateYRel":
        return (1, 0, 0, 0, 1, value * height)
    degrees = value % 360.0  # Image.rotate's matrix about the centre (at 90/180/270 it samples
    if degrees == 0:  # whole pixels, so it equals the transposes Pillow takes there); 0 is a copy
        return None
    angle = -math.radians(degrees)
    a, b = round(math.cos(angle), 15), round(math.sin(angle), 15)
    d, e = round(-math.sin(angle), 15), round(math.cos(angle), 15)
    cx, cy = width / 2, height / 2
    return (a, b, a * -cx + b * -cy + cx, d, e, d * -cx + e * -cy + cy)


def _cubic(v1: torch.Tensor, v2: torch.Tensor, v3: torch.Tensor, v4: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """Pillow's BICUBIC macro (a = -1 cubic convolution), in its own evaluation order."""
    p2 = v3 - v1
    p3 = 2 * (v1 - v2) + v3 - v4
    p4 = v2 - v1 - v3 + v4
    return v2 + d * (p2 + d * (p3 + d * p4))


def affine(x: torch.Tensor, sizes: torch.Tensor, matrices: torch.Tensor, fill: tuple[int, int, int]) -> torch.Tensor:
    """Image.transform(size, AFFINE, matrix, BICUBIC, fillcolor) per clip: output pixel (x, y) samples at
    (a(x+.5) + b(y+.5) + c, d(x+.5) + e(y+.5) + f); samples outside the clip's true area take ``fill``."""
    n, frames, channels, height, width = x.shape
    a, b, c, d, e, f = (m.view(-1, 1, 1) for m in matrices.to(torch.float64).unbind(1))
    h, w = (s.view(-1, 1, 1) for s in sizes.unbind(1))
    ys = torch.arange(height, device=x.device, dtype=torch.float64).view(1, -1, 1) + 0.5
    xs = torch.arange(width, device=x.device, dtype=torch.float64).view(1, 1, -1) + 0.5
    xin, yin = a * xs + b * ys + c, d * xs + e * ys + f
    inside = (xin >= 0) & (xin < w) & (yin >= 0) & (yin < h)
    xin, yin = xin - 0.5, yin - 0.5
    x0, y0 = torch.floor(xin), torch.floor(yin)
    dx, dy = (xin - x0).unsqueeze(1), (yin - y0).unsqueeze(1)
    x0, y0 = x0.long() - 1, y0.long() - 1
    flat = x.reshape(n, frames * channels, height * width)
    rows = []
    for ty in range(4):
        row = (y0 + ty).clamp(min=0).minimum(h - 1) * width
        taps = []
        for tx in range(4):
            index = (row + (x0 + tx).clamp(min=0).minimum(w - 1)).view(n, 1, -1).expand(-1, frames * channels, -1)
            taps.append(flat.gather(2, index).view(n, frames * channels, height, width).double())
        rows.append(_cubic(*taps, dx))
    out = torch.trunc(_cubic(*rows, dy).clamp(0, 255)).view(n, frames, channels, height, width)
    background = torch.tensor(fill, dtype=torch.float64, device=x.device).view(1, 1, 3, 1, 1)
    return torch.where(inside[:, None, None], out, background).to(x.dtype)


# -- A batch ----------------------------------------------------------------------------------------

def apply_rand_augment(x: torch.Tensor, sizes: list[list[int]], ops: list[list[Op]],
                       fill: tuple[int, int, int]) -> torch.Tensor:
    """Apply clip i's recorded ``ops[i]`` to every frame of clip i of ``x`` (n, T, 3, H, W), in order;
    ``sizes[i]`` is clip i's true (height, width)."""
    x = x.clone()
    host_sizes, sizes = sizes, to_device(sizes, x.device)
    for position in range(max((len(o) for o in ops), default=0)):
        groups: dict[str, list[int]] = {}
        for i, clip_ops in enumerate(ops):
            if position < len(clip_ops):
                groups.setdefault(clip_ops[position][0], []).append(i)
        for name in groups:
            if name not in (*LUT_OPS, *HISTOGRAM_OPS, *AFFINE_OPS, *BLEND_OPS):
                raise NotImplementedError(f"RandAugment op {name!r} has no tensor version (the 'inc1' set does)")
        _luts(x, sizes, ops, position, groups)
        _affine(x, sizes, host_sizes, ops, position, groups, fill)
        _blends(x, sizes, ops, position, groups)
    return x


def _luts(x, sizes, ops, position, groups) -> None:
    static = [i for name in LUT_OPS for i in groups.get(name, [])]
    if static:
        tables = np.stack([static_lut(*ops[i][position]) for i in static])
        luts = to_device(tables.astype(np.float64), x.device).view(len(static), 1, 1, 256)
        index = to_device(static, x.device)
        x[index] = _apply_luts(x[index], luts.expand(-1, x.shape[1], 3, -1))
    for name, make in (("AutoContrast", auto_contrast_luts), ("Equalize", equalize_luts)):
        if name in groups:
            index = to_device(groups[name], x.device)
            x[index] = _apply_luts(x[index], make(_histograms(x[index], sizes[index])))


def _affine(x, sizes, host_sizes, ops, position, groups, fill) -> None:
    members, matrices = [], []
    for name in AFFINE_OPS:
        for i in groups.get(name, []):
            matrix = affine_matrix(*ops[i][position], *host_sizes[i])
            if matrix is not None:
                members.append(i)
                matrices.append(matrix)
    if members:
        index = to_device(members, x.device)
        warp = affine_triton if x.is_cuda and HAS_TRITON else affine
        x[index] = warp(x[index], sizes[index], to_device(np.array(matrices, dtype=np.float64), x.device), fill)


def _blends(x, sizes, ops, position, groups) -> None:
    for name in BLEND_OPS:
        if name in groups:
            members = groups[name]
            index = to_device(members, x.device)
            factors = to_device(np.array([ops[i][position][1][0] for i in members], dtype=np.float32), x.device)
            part = x[index]
            x[index] = blend(_degenerate(name, part, sizes[index]), part, factors)
