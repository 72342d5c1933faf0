"""LoRA (Hu et al., 2021, "LoRA: Low-Rank Adaptation of Large Language Models") on the frozen ViT.

A frozen projection ``W`` of the chosen kinds gets a low-rank update, ``W x + (alpha / r) B A x``,
with ``A`` [r, in] Kaiming-uniform (loralib's init, PyTorch's default for a Linear) and ``B``
[out, r] zero, so the model starts as the image model. Targets: the query, key and value parts of
the fused ``attn.qkv`` (each its own A and B, as loralib's MergedLinear), the attention's output
projection ``o`` (``attn.proj``) and, optionally, the MLP's ``fc1`` / ``fc2``. Only the updates and
the head train. Frames never interact: LoRA is blind to frame order.

``merge(model)`` folds every update into its frozen weight and removes the wrappers: the same
function with no extra cost at inference. ``alpha = r`` in the presets, as the paper sets alpha to
the first r it tries (a scale of 1); ``qv_r8`` is the paper's usual choice (Wq, Wv), ``qkvo_r16``
adapts all four attention projections. K400 and SSv2 run ``qv_r8`` at the recipe's learning rate.

The synthetic recipes keep the defaults (``qv_r8``) and their lr (0.1 per 256 clips), chosen by a
sweep on synth_appearance (one seed, the 48k-stills synth_vit, 640 validation clips; top-1 %):
qv_r8 at base lr 0.03 -> 56.9, 0.1 -> 58.8, 0.3 -> 54.4; q,k,v,o at rank 8 -> 55.9; q,v at rank 4
-> 58.1 (linear_probe 56.1, st_adapter 56.9 in the same setting). On synth_motion it stays with the
frame-order-blind methods, as it must: 25.6 (linear_probe 22.5).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from .backbone import FrameEncoder
from .base import MethodConfig, VideoClassifier
from .registry import register_method

TARGETS = ("q", "k", "v", "o", "fc1", "fc2")
# projection site -> the targets its output is made of, in order (qkv is q, k and v side by side)
SITES = {"attn.qkv": ("q", "k", "v"), "attn.proj": ("o",), "mlp.fc1": ("fc1",), "mlp.fc2": ("fc2",)}


class LowRankUpdate(nn.Module):
    """``(alpha / rank) * B A x``."""

    def __init__(self, in_features: int, out_features: int, rank: int, alpha: float) -> None:
        super().__init__()
        self.scale = alpha / rank
        self.a = nn.Parameter(torch.empty(rank, in_features))
        self.b = nn.Parameter(torch.zeros(out_features, rank))
        nn.init.kaiming_uniform_(self.a, a=math.sqrt(5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(F.linear(x, self.a), self.b) * self.scale

    def delta_weight(self) -> torch.Tensor:
        return (self.b @ self.a) * self.scale


class LoraProjection(nn.Module):
    """Wraps a frozen projection whose output is ``parts`` side by side; adds the updates of the
    targeted parts (the others get zero)."""

    def __init__(self, parts: Sequence[str], updates: dict[str, LowRankUpdate]) -> None:
        super().__init__()
        self.parts = tuple(parts)
        self.updates = nn.ModuleDict(updates)

    def forward(self, x: torch.Tensor, linear: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        deltas = {name: update(x) for name, update in self.updates.items()}
        if len(self.parts) == 1:
            return linear(x) + deltas[self.parts[0]]
        like = next(iter(deltas.values()))
        return linear(x) + torch.cat([deltas.get(name, torch.zeros_like(like)) for name in self.parts], dim=-1)


@dataclass(frozen=True)
class LoraConfig(MethodConfig):
    """Rank, alpha and targets (from q, k, v, o, fc1, fc2) of the low-rank updates."""

    rank: int = 8
    alpha: float = 8.0
    targets: str | Sequence[str] = ("q", "v")

    def __post_init__(self) -> None:
        self.require_int("rank", 1)
        self.require_number("alpha", 0, inclusive=False)
        items = self.targets.split(",") if isinstance(self.targets, str) else list(self.targets)
        items = [t.strip() for t in items]
        if not items or any(t not in TARGETS for t in items) or len(set(items)) != len(items):
            raise self.fail("targets", self.targets, f"expected a non-empty set of distinct targets from {TARGETS}")
        object.__setattr__(self, "targets", tuple(t for t in TARGETS if t in items))


def _lora_sites(encoder: FrameEncoder) -> list[tuple[str, int]]:
    return [(site, i) for i in range(encoder.depth) for site in SITES
            if isinstance(getattr(encoder.projection(site, i), "wrapper", None), LoraProjection)]


@torch.no_grad()
def merge(model: VideoClassifier) -> VideoClassifier:
    """Fold every low-rank update into its frozen weight and remove the wrappers (in place): the model
    computes the same function as a plain image model plus the head, which is then its trainable set."""
    encoder = model.encoder
    for site, i in _lora_sites(encoder):
        wrapper = encoder.unwrap_projection(site, i)
        weight = encoder.projection(site, i).weight
        width = weight.shape[0] // len(wrapper.parts)
        for index, name in enumerate(wrapper.parts):
            if name in wrapper.updates:
                rows = weight[index * width:(index + 1) * width]
                rows += wrapper.updates[name].delta_weight().to(weight.dtype)
    model.declare_trainable([model.head])
    return model


@register_method("lora", LoraConfig, presets={
    "qv_r8": {"rank": 8, "alpha": 8.0, "targets": ("q", "v")},
    "qkvo_r16": {"rank": 16, "alpha": 16.0, "targets": ("q", "k", "v", "o")},
}, recipe_options={"k400": {"preset": "qv_r8"}, "ssv2": {"preset": "qv_r8"}}, merge=merge)
def attach(model: VideoClassifier, cfg: LoraConfig) -> list:
    encoder = model.encoder
    wrappers = []
    for i in range(encoder.depth):
        for site, parts in SITES.items():
            chosen = [p for p in parts if p in cfg.targets]
            if not chosen:
                continue
            linear = encoder.projection(site, i)
            width = linear.out_features // len(parts)
            updates = {p: LowRankUpdate(linear.in_features, width, cfg.rank, cfg.alpha) for p in chosen}
            wrappers.append(LoraProjection(parts, updates))
            encoder.wrap_projection(site, i, "lora", wrappers[-1])
    return [*wrappers, model.head]
