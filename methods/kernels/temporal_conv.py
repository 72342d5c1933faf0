"""ST-Adapter's depthwise temporal convolution as one Triton kernel per direction.

On clips ``x`` [B, T, R, C] (R token rows, C channels, contiguous) with taps ``w`` [K, C]:
    out[t] = bias + sum_j w[j] * x[t + j - K//2]           (zero outside 0..T-1)
The PyTorch formulation (``methods.temporal_conv``) makes one pass over the tensor per tap plus
autograd's temporaries; here each program keeps a [rows x channels] tile of all T frames in cache,
reads it once and writes once, in fp32 inside. The backward computes the input gradient (the same
convolution with the taps reversed) and the tap/bias gradients from the same tile (one read from
device memory, the re-reads hit the cache), accumulating element-wise and reducing over rows once
per tap; per-program partial sums are reduced afterwards, so the result is deterministic.
"""
from __future__ import annotations

import torch

from . import HAS_TRITON

if HAS_TRITON:
    import triton
    import triton.language as tl

    @triton.jit
    def _conv_fwd_kernel(x_ptr, taps_ptr, bias_ptr, out_ptr, num_frames, rows, channels,
                         KERNEL: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr):
        clip = tl.program_id(0).to(tl.int64)
        r = tl.program_id(1) * BLOCK_R + tl.arange(0, BLOCK_R)
        c = tl.program_id(2) * BLOCK_C + tl.arange(0, BLOCK_C)
        c_ok = c < channels
        mask = (r < rows)[:, None] & c_ok[None, :]
        tile = r[:, None] * channels + c[None, :]
        frame = rows * channels
        base = clip * num_frames * frame
        bias = tl.load(bias_ptr + c, mask=c_ok, other=0.0).to(tl.float32)
        for t in range(num_frames):
            acc = tl.zeros([BLOCK_R, BLOCK_C], tl.float32) + bias[None, :]
            for j in tl.static_range(KERNEL):
                src = t + j - KERNEL // 2
                src_rows = tl.zeros([BLOCK_R], tl.int32) + src  # a vector: masks must be tensors
                inside = mask & ((src_rows >= 0) & (src_rows < num_frames))[:, None]
                tap = tl.load(taps_ptr + j * channels + c, mask=c_ok, other=0.0).to(tl.float32)
                xv = tl.load(x_ptr + base + src * frame + tile, mask=inside, other=0.0)
                acc += tap[None, :] * xv.to(tl.float32)
            tl.store(out_ptr + base + t * frame + tile, acc.to(out_ptr.dtype.element_ty), mask=mask)

    @triton.jit
    def _conv_bwd_kernel(g_ptr, x_ptr, flipped_ptr, gx_ptr, gw_part_ptr, gb_part_ptr, num_frames,
                         rows, channels, KERNEL: tl.constexpr, BLOCK_R: tl.constexpr,
                         BLOCK_C: tl.constexpr):
        clip = tl.program_id(0).to(tl.int64)
        r = tl.program_id(1) * BLOCK_R + tl.arange(0, BLOCK_R)
        c = tl.program_id(2) * BLOCK_C + tl.arange(0, BLOCK_C)
        c_ok = c < channels
        mask = (r < rows)[:, None] & c_ok[None, :]
        tile = r[:, None] * channels + c[None, :]
        frame = rows * channels
        base = clip * num_frames * frame
        part = (clip * tl.num_programs(1) + tl.program_id(1)) * channels
        # input gradient (the convolution with the taps reversed) and bias gradient
        acc_b = tl.zeros([BLOCK_R, BLOCK_C], tl.float32)
        for t in range(num_frames):
            acc_b += tl.load(g_ptr + base + t * frame + tile, mask=mask, other=0.0).to(tl.float32)
            gx = tl.zeros([BLOCK_R, BLOCK_C], tl.float32)
            for j in tl.static_range(KERNEL):
                src = t + j - KERNEL // 2
                src_rows = tl.zeros([BLOCK_R], tl.int32) + src  # a vector: masks must be tensors
                inside = mask & ((src_rows >= 0) & (src_rows < num_frames))[:, None]
                tap = tl.load(flipped_ptr + j * channels + c, mask=c_ok, other=0.0).to(tl.float32)
                gv = tl.load(g_ptr + base + src * frame + tile, mask=inside, other=0.0)
                gx += tap[None, :] * gv.to(tl.float32)
            tl.store(gx_ptr + base + t * frame + tile, gx.to(gx_ptr.dtype.element_ty), mask=mask)
        tl.store(gb_part_ptr + part + c, tl.sum(acc_b, axis=0), mask=c_ok)
        # tap gradients: out[t] read x[t + j - K//2] through tap j; one reduction per tap
        for j in tl.static_range(KERNEL):
            acc = tl.zeros([BLOCK_R, BLOCK_C], tl.float32)
            for t in range(num_frames):
                src = t + j - KERNEL // 2
                src_rows = tl.zeros([BLOCK_R], tl.int32) + src
                inside = mask & ((src_rows >= 0) & (src_rows < num_frames))[:, None]
                g_t = tl.load(g_ptr + base + t * frame + tile, mask=inside, other=0.0)
                xv = tl.load(x_ptr + base + src * frame + tile, mask=inside, other=0.0)
                acc += g_t.to(tl.float32) * xv.to(tl.float32)
            tl.store(gw_part_ptr + part * KERNEL + j * channels + c, tl.sum(acc, axis=0), mask=c_ok)


BLOCK_R, BLOCK_C, NUM_WARPS = 32, 64, 4


def _grid(x: torch.Tensor) -> tuple[int, int, int]:
    clips, _, rows, channels = x.shape
    return clips, triton.cdiv(rows, BLOCK_R), triton.cdiv(channels, BLOCK_C)


def conv_forward(x: torch.Tensor, taps: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """``x`` [B, T, R, C] contiguous, ``taps`` [K, C] and ``bias`` [C] contiguous -> out like ``x``."""
    out = torch.empty_like(x)
    _conv_fwd_kernel[_grid(x)](x, taps, bias, out, x.shape[1], x.shape[2], x.shape[3],
                               KERNEL=taps.shape[0], BLOCK_R=BLOCK_R, BLOCK_C=BLOCK_C,
                               num_warps=NUM_WARPS)
    return out


def conv_backward(g: torch.Tensor, x: torch.Tensor, taps: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients (input like ``x``, taps [K, C] fp32, bias [C] fp32) of ``conv_forward``."""
    kernel, channels = taps.shape
    grid = _grid(x)
    gx = torch.empty_like(x)
    gw_part = torch.empty(grid[0] * grid[1], kernel, channels, device=x.device, dtype=torch.float32)
    gb_part = torch.empty(grid[0] * grid[1], channels, device=x.device, dtype=torch.float32)
    _conv_bwd_kernel[grid](g, x, taps.flip(0).contiguous(), gx, gw_part, gb_part, x.shape[1],
                           x.shape[2], channels, KERNEL=kernel, BLOCK_R=BLOCK_R, BLOCK_C=BLOCK_C,
                           num_warps=NUM_WARPS)
    return gx, gw_part.sum(0), gb_part.sum(0)


class TemporalConvFunction(torch.autograd.Function):
    """Autograd for the kernels; ``weight`` in Conv3d's layout [C, 1, K, 1, 1], ``bias`` [C]."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        taps = weight.reshape(weight.shape[0], -1).t().contiguous()
        ctx.save_for_backward(x, taps)
        ctx.weight_shape, ctx.param_dtypes = weight.shape, (weight.dtype, bias.dtype)
        return conv_forward(x, taps, bias.contiguous())

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, taps = ctx.saved_tensors
        gx, gw, gb = conv_backward(grad.contiguous(), x, taps)
        weight_dtype, bias_dtype = ctx.param_dtypes
        return gx, gw.t().reshape(ctx.weight_shape).to(weight_dtype), gb.to(bias_dtype)


def temporal_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """The kernel path of ``methods.temporal_conv.temporal_depthwise_conv`` for ``x`` [B, T, ..., C]."""
    shape = x.shape
    clips = x.reshape(shape[0], shape[1], -1, shape[-1]).contiguous()
    return TemporalConvFunction.apply(clips, weight, bias).view(shape)
