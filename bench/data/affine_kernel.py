"""Pillow's affine bicubic warp (``gpu_augment.affine``) as one Triton kernel.

The PyTorch formulation runs ~100 elementwise passes over the batch in float64 (16 gathers, the
cubic's multiply-adds); memory-bound, it cost ~50 ms per SSv2 batch on an H200. Here each program
computes its pixels' source coordinates and clamped taps once and loops over every frame and
channel of the clip, reading the input once and writing the output once. Arithmetic is Pillow's:
float64, the same evaluation order, no fused multiply-add (``enable_fp_fusion=False``), so the
result equals the PyTorch formulation (and Pillow) exactly; tests compare them on CUDA and, through
Triton's interpreter, on CPU.
"""
from __future__ import annotations

import torch

from methods.kernels import HAS_TRITON

if HAS_TRITON:
    import triton
    import triton.language as tl

    @triton.jit
    def _cubic(v1, v2, v3, v4, d):
        p2 = v3 - v1
        p3 = 2 * (v1 - v2) + v3 - v4
        p4 = v2 - v1 - v3 + v4
        return v2 + d * (p2 + d * (p3 + d * p4))

    @triton.jit
    def _row(src, row, c0, c1, c2, c3, dx, mask):
        return _cubic(tl.load(src + row + c0, mask=mask, other=0.0).to(tl.float64),
                      tl.load(src + row + c1, mask=mask, other=0.0).to(tl.float64),
                      tl.load(src + row + c2, mask=mask, other=0.0).to(tl.float64),
                      tl.load(src + row + c3, mask=mask, other=0.0).to(tl.float64), dx)

    @triton.jit
    def _affine_kernel(x_ptr, out_ptr, matrix_ptr, size_ptr, fill_ptr, planes, height, width,
                       BLOCK: tl.constexpr):
        clip = tl.program_id(0).to(tl.int64)
        pixel = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
        valid = pixel < height * width
        out_y, out_x = pixel // width, pixel % width
        a = tl.load(matrix_ptr + clip * 6)
        b = tl.load(matrix_ptr + clip * 6 + 1)
        c = tl.load(matrix_ptr + clip * 6 + 2)
        d = tl.load(matrix_ptr + clip * 6 + 3)
        e = tl.load(matrix_ptr + clip * 6 + 4)
        f = tl.load(matrix_ptr + clip * 6 + 5)
        h = tl.load(size_ptr + clip * 2).to(tl.int32)
        w = tl.load(size_ptr + clip * 2 + 1).to(tl.int32)
        xs = out_x.to(tl.float64) + 0.5
        ys = out_y.to(tl.float64) + 0.5
        xin = a * xs + b * ys + c
        yin = d * xs + e * ys + f
        inside = (xin >= 0) & (xin < w.to(tl.float64)) & (yin >= 0) & (yin < h.to(tl.float64))
        xin = xin - 0.5
        yin = yin - 0.5
        x0 = tl.floor(xin)
        y0 = tl.floor(yin)
        dx = xin - x0
        dy = yin - y0
        xi = tl.where(inside, x0, 0.0).to(tl.int32) - 1  # outside pixels take the fill: any tap will do
        yi = tl.where(inside, y0, 0.0).to(tl.int32) - 1
        c0 = tl.minimum(tl.maximum(xi, 0), w - 1)
        c1 = tl.minimum(tl.maximum(xi + 1, 0), w - 1)
        c2 = tl.minimum(tl.maximum(xi + 2, 0), w - 1)
        c3 = tl.minimum(tl.maximum(xi + 3, 0), w - 1)
        r0 = tl.minimum(tl.maximum(yi, 0), h - 1) * width
        r1 = tl.minimum(tl.maximum(yi + 1, 0), h - 1) * width
        r2 = tl.minimum(tl.maximum(yi + 2, 0), h - 1) * width
        r3 = tl.minimum(tl.maximum(yi + 3, 0), h - 1) * width
        plane = height * width
        for p in range(planes):
            src = x_ptr + (clip * planes + p) * plane
            value = _cubic(_row(src, r0, c0, c1, c2, c3, dx, valid), _row(src, r1, c0, c1, c2, c3, dx, valid),
                           _row(src, r2, c0, c1, c2, c3, dx, valid), _row(src, r3, c0, c1, c2, c3, dx, valid), dy)
            value = tl.floor(tl.minimum(tl.maximum(value, 0.0), 255.0))  # Pillow's clip, then (UINT8)
            value = tl.where(inside, value, tl.load(fill_ptr + p % 3))
            tl.store(out_ptr + (clip * planes + p) * plane + pixel, value.to(tl.float32), mask=valid)


def affine_triton(x: torch.Tensor, sizes: torch.Tensor, matrices: torch.Tensor,
                  fill: tuple[int, int, int], block: int = 256) -> torch.Tensor:
    """``gpu_augment.affine`` for float32 x (n, T, 3, H, W): the same pixels, one kernel (CUDA, or CPU
    tensors under ``TRITON_INTERPRET=1``)."""
    n, frames, channels, height, width = x.shape
    x = x.contiguous()
    out = torch.empty_like(x)
    fills = torch.tensor(fill, dtype=torch.float64).to(x.device, non_blocking=True)
    grid = (n, triton.cdiv(height * width, block))
    _affine_kernel[grid](x, out, matrices.to(torch.float64).contiguous(), sizes.to(torch.int64).contiguous(),
                         fills, frames * channels, height, width, BLOCK=block, enable_fp_fusion=False)
    return out
