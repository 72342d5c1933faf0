"""timm's RandAugment, op for op, on (T, 3, H, W) tensors: the same draws as the PIL path, the same pixels up to rounding.

``rand_augment_ops`` runs timm's own ``RandAugment.__call__`` with every op's image function swapped
for a recorder, under the generator reseeding of ``transforms.apply_to_every_frame``, so the op
names and arguments are timm's draws, not a re-implementation of them. ``apply_rand_augment`` then
applies them to every frame of a clip at once. Each op follows Pillow's C code (``ImageOps``,
``ImageEnhance``, ``Image.transform`` with bicubic resampling): the same look-up tables, fixed-point
greyscale, float blends truncated to uint8, and the affine bicubic filter's kernel, edge clamping
and fill. Tensors hold float values that are integers in [0, 255] between ops, as PIL's uint8
images do; where Pillow's float rounding and the device's differ, a pixel can move by one level.
"""
from __future__ import annotations

import copy
import math
import random
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

Op = tuple[str, tuple[float, ...]]


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


# -- Pixel ops: x is (T, 3, H, W) float, integer values in [0, 255] -----------------------------------

def _apply_lut(x: torch.Tensor, lut: torch.Tensor) -> torch.Tensor:
    """Per frame and channel look-up: ``lut`` is (256,) or (T, 3, 256)."""
    if lut.dim() == 1:
        return lut[x.long()]
    groups = torch.arange(lut.shape[0] * 3, device=x.device).view(lut.shape[0], 3, 1, 1) * 256
    return lut.reshape(-1)[x.long() + groups]


def _histograms(x: torch.Tensor) -> torch.Tensor:
    """(T, 3, 256) int64 counts per frame and channel."""
    frames = x.shape[0]
    groups = torch.arange(frames * 3, device=x.device).view(frames, 3, 1, 1) * 256
    return torch.bincount((x.long() + groups).flatten(), minlength=frames * 3 * 256).view(frames, 3, 256)


def auto_contrast(x: torch.Tensor) -> torch.Tensor:
    """ImageOps.autocontrast: stretch [lowest, highest] used level to [0, 255], truncating."""
    used = _histograms(x) > 0
    levels = torch.arange(256, device=x.device, dtype=torch.float64)
    low = used.int().argmax(-1, keepdim=True).double()
    high = 255 - used.flip(-1).int().argmax(-1, keepdim=True).double()
    scale = torch.full_like(low, 255.0) / (high - low).clamp(min=1)  # true division (scalar / tensor is not)
    lut = torch.trunc(levels * scale - low * scale).clamp(0, 255)
    lut = torch.where(high > low, lut, levels)
    return _apply_lut(x, lut.to(x.dtype))


def equalize(x: torch.Tensor) -> torch.Tensor:
    """ImageOps.equalize: Pillow's integer cumulative-histogram table."""
    counts = _histograms(x)
    levels = torch.arange(256, device=x.device)
    used = counts > 0
    top = 255 - used.flip(-1).int().argmax(-1, keepdim=True)
    step = (counts.sum(-1, keepdim=True) - counts.gather(-1, top)) // 255
    before = counts.cumsum(-1) - counts
    lut = (step // 2 + before) // step.clamp(min=1)
    identity = (used.sum(-1, keepdim=True) <= 1) | (step == 0)
    lut = torch.where(identity, levels, lut).clamp(max=255)
    return _apply_lut(x, lut.to(x.dtype))


def invert(x: torch.Tensor) -> torch.Tensor:
    return 255 - x


def posterize(x: torch.Tensor, bits: float) -> torch.Tensor:
    bits = int(bits)
    if bits >= 8:
        return x
    mask = ~(2 ** (8 - bits) - 1) & 0xFF
    return (x.to(torch.uint8) & mask).to(x.dtype)


def solarize(x: torch.Tensor, threshold: float) -> torch.Tensor:
    return torch.where(x < threshold, x, 255 - x)


def solarize_add(x: torch.Tensor, add: float, threshold: float = 128) -> torch.Tensor:
    return torch.where(x < threshold, (x + int(add)).clamp(max=255), x)


def _grey(x: torch.Tensor) -> torch.Tensor:
    """Pillow's RGB -> L: ITU-R 601-2 weights in 16-bit fixed point, rounded. (T, 1, H, W)."""
    r, g, b = x.long().unbind(1)
    return ((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16).unsqueeze(1).to(x.dtype)


def blend(degenerate: torch.Tensor, x: torch.Tensor, factor: float) -> torch.Tensor:
    """Image.blend(degenerate, image, factor): float32 arithmetic, truncated to uint8 (clipped when extrapolating)."""
    if factor == 0.0:
        return degenerate.expand_as(x).clone()
    if factor == 1.0:
        return x
    alpha = torch.tensor(factor, dtype=torch.float32, device=x.device)
    low = degenerate.to(torch.float32)
    out = low + alpha * (x.to(torch.float32) - low)
    return torch.trunc(out.clamp(0, 255)).to(x.dtype)


def color(x: torch.Tensor, factor: float) -> torch.Tensor:
    return blend(_grey(x), x, factor)


def contrast(x: torch.Tensor, factor: float) -> torch.Tensor:
    grey = _grey(x)
    mean = torch.floor(grey.double().mean(dim=(1, 2, 3), keepdim=True) + 0.5)  # int(mean + 0.5), mean >= 0
    return blend(mean.to(x.dtype), x, factor)


def brightness(x: torch.Tensor, factor: float) -> torch.Tensor:
    return blend(torch.zeros((), dtype=x.dtype, device=x.device), x, factor)


_SMOOTH = torch.tensor([[1.0, 1.0, 1.0], [1.0, 5.0, 1.0], [1.0, 1.0, 1.0]]) / 13


def sharpness(x: torch.Tensor, factor: float) -> torch.Tensor:
    """ImageEnhance.Sharpness: blend with ImageFilter.SMOOTH (float32, +0.5, truncated; border pixels kept)."""
    kernel = _SMOOTH.to(x.device).view(1, 1, 3, 3).expand(3, 1, 3, 3)
    smooth = torch.trunc((F.conv2d(x.to(torch.float32), kernel, groups=3) + 0.5).clamp(0, 255)).to(x.dtype)
    degenerate = x.clone()
    degenerate[..., 1:-1, 1:-1] = smooth
    return blend(degenerate, x, factor)


def _cubic(v1: torch.Tensor, v2: torch.Tensor, v3: torch.Tensor, v4: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """Pillow's BICUBIC macro (a = -1 cubic convolution), in its own evaluation order."""
    p2 = v3 - v1
    p3 = 2 * (v1 - v2) + v3 - v4
    p4 = v2 - v1 - v3 + v4
    return v2 + d * (p2 + d * (p3 + d * p4))


def affine(x: torch.Tensor, matrix: tuple[float, ...], fill: tuple[int, int, int]) -> torch.Tensor:
    """Image.transform(size, AFFINE, matrix, BICUBIC, fillcolor): output pixel (x, y) samples the input at
    (a(x+.5) + b(y+.5) + c, d(x+.5) + e(y+.5) + f); samples outside the image take ``fill``."""
    frames, channels, height, width = x.shape
    a, b, c, d, e, f = matrix
    ys = torch.arange(height, device=x.device, dtype=torch.float64).view(-1, 1) + 0.5
    xs = torch.arange(width, device=x.device, dtype=torch.float64).view(1, -1) + 0.5
    xin, yin = a * xs + b * ys + c, d * xs + e * ys + f
    inside = (xin >= 0) & (xin < width) & (yin >= 0) & (yin < height)
    xin, yin = xin - 0.5, yin - 0.5
    x0, y0 = torch.floor(xin), torch.floor(yin)
    dx, dy = xin - x0, yin - y0
    x0, y0 = x0.long() - 1, y0.long() - 1
    flat = x.to(torch.float64).flatten(-2)
    rows = []
    for ty in range(4):
        row = (y0 + ty).clamp(0, height - 1) * width
        taps = [flat[..., (row + (x0 + tx).clamp(0, width - 1)).flatten()].view(frames, channels, height, width)
                for tx in range(4)]
        rows.append(_cubic(*taps, dx))
    out = torch.trunc(_cubic(*rows, dy).clamp(0, 255))
    background = torch.tensor(fill, dtype=torch.float64, device=x.device).view(1, 3, 1, 1)
    return torch.where(inside, out, background).to(x.dtype)


def rotate(x: torch.Tensor, degrees: float, fill: tuple[int, int, int]) -> torch.Tensor:
    """Image.rotate(degrees, BICUBIC, fillcolor=fill) about the centre, same size (Pillow's matrix and fast paths)."""
    height, width = x.shape[-2:]
    degrees = degrees % 360.0
    if degrees == 0:
        return x
    if degrees == 180:
        return x.flip(-1, -2)
    if degrees in (90, 270) and width == height:
        return torch.rot90(x, 1 if degrees == 90 else -1, dims=(-2, -1))
    angle = -math.radians(degrees)
    a, b = round(math.cos(angle), 15), round(math.sin(angle), 15)
    d, e = round(-math.sin(angle), 15), round(math.cos(angle), 15)
    cx, cy = width / 2, height / 2
    c = a * -cx + b * -cy + cx
    f = d * -cx + e * -cy + cy
    return affine(x, (a, b, c, d, e, f), fill)


def _geometric(name: str, x: torch.Tensor, value: float, fill: tuple[int, int, int]) -> torch.Tensor:
    height, width = x.shape[-2:]
    matrices = {"ShearX": (1, value, 0, 0, 1, 0), "ShearY": (1, 0, 0, value, 1, 0),
                "TranslateXRel": (1, 0, value * width, 0, 1, 0), "TranslateYRel": (1, 0, 0, 0, 1, value * height)}
    return affine(x, matrices[name], fill)


def apply_op(x: torch.Tensor, op: Op, fill: tuple[int, int, int]) -> torch.Tensor:
    """One recorded RandAugment op on every frame of (T, 3, H, W)."""
    name, args = op
    if name == "Rotate":
        return rotate(x, args[0], fill)
    if name in ("ShearX", "ShearY", "TranslateXRel", "TranslateYRel"):
        return _geometric(name, x, args[0], fill)
    functions = {"AutoContrast": auto_contrast, "Equalize": equalize, "Invert": invert,
                 "PosterizeIncreasing": posterize, "SolarizeIncreasing": solarize, "SolarizeAdd": solarize_add,
                 "ColorIncreasing": color, "ContrastIncreasing": contrast, "BrightnessIncreasing": brightness,
                 "SharpnessIncreasing": sharpness}
    if name not in functions:
        raise NotImplementedError(f"RandAugment op {name!r} has no tensor version (the recipe's 'inc1' set does)")
    return functions[name](x, *args)


def apply_rand_augment(x: torch.Tensor, ops: list[Op], fill: tuple[int, int, int]) -> torch.Tensor:
    for op in ops:
        x = apply_op(x, op, fill)
    return x
