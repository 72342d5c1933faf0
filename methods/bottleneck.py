"""The bottleneck adapter shared by ``st_adapter`` and ``adapter``, and their common placement options.

One module covers ST-Adapter (fc1 -> temporal depthwise conv -> fc2, no activation), its
kernel-(1,1,1) ablation and the plain adapter (fc1 -> GELU -> fc2, optionally with the conv), so
the methods differ only in these switches, never in code paths.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Sequence

import torch
from torch import nn

from .base import MethodConfig, VideoClassifier, last_blocks
from .temporal_conv import TemporalDepthwiseConv


class BottleneckAdapter(nn.Module):
    """``x + fc2(act(conv_t(fc1(x))))`` on the patch tokens; prefix tokens (CLS) pass unchanged.

    ``zero_init`` picks what makes the adapter the identity at initialisation:
    "conv" (ST-Adapter): conv weight and bias and both fc biases are zero, fc weights keep
    PyTorch's default; "fc2" (plain adapter): fc2 weight and bias are zero and the conv, if any,
    starts as the identity in time (centre tap 1), so every part still receives gradient.
    """

    def __init__(self, dim: int, width: int, kernel_size: int | None, activation: bool,
                 zero_init: Literal["conv", "fc2"], num_prefix_tokens: int = 1) -> None:
        super().__init__()
        self.num_prefix_tokens = num_prefix_tokens
        self.fc1 = nn.Linear(dim, width)
        self.conv = TemporalDepthwiseConv(width, kernel_size) if kernel_size is not None else None
        self.act = nn.GELU() if activation else nn.Identity()
        self.fc2 = nn.Linear(width, dim)
        self._init(zero_init)

    @torch.no_grad()
    def _init(self, zero_init: str) -> None:
        if zero_init == "conv":
            if self.conv is None:
                raise ValueError("zero_init='conv' needs a temporal conv")
            for param in (self.conv.weight, self.conv.bias, self.fc1.bias, self.fc2.bias):
                param.zero_()
        elif zero_init == "fc2":
            self.fc2.weight.zero_()
            self.fc2.bias.zero_()
            if self.conv is not None:
                self.conv.weight.zero_()
                self.conv.weight[:, :, self.conv.weight.shape[2] // 2] = 1.0
                self.conv.bias.zero_()
        else:
            raise ValueError(f"zero_init={zero_init!r}; expected 'conv' or 'fc2'")

    def forward(self, x: torch.Tensor, num_frames: int) -> torch.Tensor:
        """The plain formulation (slice, adapt, concatenate); methods.fast has the GPU form."""
        prefix, patches = x[:, :self.num_prefix_tokens], x[:, self.num_prefix_tokens:]
        delta = self.fc2(self.act(self._temporal(self.fc1(patches), num_frames)))
        return torch.cat((prefix, patches + delta), dim=1)

    def _temporal(self, hidden: torch.Tensor, num_frames: int) -> torch.Tensor:
        return hidden if self.conv is None else self.conv(hidden, num_frames)


@dataclass(frozen=True)
class AdapterPlacement(MethodConfig):
    """Options shared by the adapter methods: bottleneck width, slots, last-N blocks, conv kernel."""

    width: int = 384
    positions: str | Sequence[str] = ("pre_mlp",)
    num_layers: int | None = None
    kernel_size: int | Sequence[int] | None = 3

    def __post_init__(self) -> None:
        self.require_int("width", 1)
        if self.num_layers is not None:
            self.require_int("num_layers", 1)
        object.__setattr__(self, "positions", self.normalised_positions(self.positions))
        object.__setattr__(self, "kernel_size", self._temporal_kernel(self.kernel_size))

    def _temporal_kernel(self, kernel: int | Sequence[int] | None) -> int | None:
        """Accept k or (k, 1, 1) with k odd (zero padding k//2 keeps T); None means no conv."""
        if kernel is None:
            return None
        size = kernel
        if not isinstance(kernel, int) and len(kernel) == 3 and tuple(kernel[1:]) == (1, 1):
            size = kernel[0]
        if isinstance(size, bool) or not isinstance(size, int) or size < 1 or size % 2 == 0:
            raise self.fail("kernel_size", kernel, "expected an odd temporal size k >= 1, as k or "
                                                   "(k, 1, 1), so that zero padding keeps T frames")
        return size

    def check_backbone(self, backbone) -> None:
        self.require_layers(backbone)


def insert_adapters(model: VideoClassifier, cfg: AdapterPlacement, activation: bool,
                    zero_init: Literal["conv", "fc2"]) -> list[BottleneckAdapter]:
    """Put one adapter in each chosen slot of the last ``cfg.num_layers`` blocks."""
    encoder = model.encoder
    adapters = []
    for i in last_blocks(encoder.depth, cfg.num_layers):
        for position in cfg.positions:
            adapter = BottleneckAdapter(encoder.width, cfg.width, cfg.kernel_size, activation,
                                        zero_init, encoder.num_prefix_tokens)
            encoder.set_slot(position, adapter, i)
            adapters.append(adapter)
    return adapters
