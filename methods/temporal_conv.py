"""ST-Adapter's depthwise temporal convolution, on channels-last tokens.

The parameters keep ``nn.Conv3d``'s layout (weight [C, 1, k, 1, 1], bias [C]) so that released
checkpoints load unchanged; the computation is the equivalent sum of time-shifted multiply-adds,
    out[t] = b + sum_j w[j] * x[t + j - k//2]      (zero outside 0..T-1),
done in place on [B, T, ..., C] without the permutes a Conv3d would need. ``temporal_depthwise_conv``
is the reference the faster form pins to (tests pin it to ``nn.Conv3d``); ``methods.fast`` swaps in
the Triton kernels of ``methods.kernels.temporal_conv`` on CUDA.
"""
from __future__ import annotations

import math

import torch
from torch import nn


def temporal_depthwise_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """Depthwise convolution over dim 1 (time) of channels-last ``x`` [B, T, ..., C].

    ``weight`` is [C, 1, k, 1, 1] (Conv3d layout, k odd), ``bias`` is [C]; zero padding in time.
    """
    num_frames = x.shape[1]
    # [k, C], tap j multiplies x[t + j - k//2]; in x's dtype, as Conv3d runs under autocast
    taps = weight.view(weight.shape[0], -1).t().to(x.dtype)
    centre = taps.shape[0] // 2
    out = torch.addcmul(bias.to(x.dtype), x, taps[centre])
    for j, tap in enumerate(taps):
        shift = j - centre
        steps = num_frames - abs(shift)
        if shift == 0 or steps <= 0:
            continue
        dst, src = (0, shift) if shift > 0 else (-shift, 0)
        out.narrow(1, dst, steps).addcmul_(x.narrow(1, src, steps), tap)
    return out


class TemporalDepthwiseConv(nn.Module):
    """Per-channel temporal convolution of tokens [B*T, L, C] (frames of a clip contiguous)."""

    def __init__(self, channels: int, kernel_size: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(channels, 1, kernel_size, 1, 1))
        self.bias = nn.Parameter(torch.empty(channels))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Conv3d's default initialisation (the methods then overwrite it as they need)."""
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        bound = 1 / math.sqrt(self.weight[0].numel())
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor, num_frames: int) -> torch.Tensor:
        clips = x.view(-1, num_frames, *x.shape[1:])
        return temporal_depthwise_conv(clips, self.weight, self.bias).flatten(0, 1)
