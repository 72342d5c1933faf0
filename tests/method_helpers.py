"""Small builders the method tests share: every method on the tiny CPU backbone with the options it
declares for the synthetic recipes (sized for a 64-wide, 4-block ViT), random clips, and exact
trainable counts on CLIP ViT-B/16 built on the meta device."""
from __future__ import annotations

import torch
from torch import nn

from methods import build_model, get_method

TINY = "vit_tiny_test"  # CLIP-style: 32 px, patch 8, width 64, 4 blocks, 4 heads
TINY_FAMILY = "synth"  # the recipe family whose options fit the tiny backbone
HEAD = {"head.fc.weight", "head.fc.bias"}


def tiny_options(method: str, **overrides) -> dict:
    return {**get_method(method).options_for(TINY_FAMILY), **overrides}


def tiny_model(method: str, num_frames: int = 4, num_classes: int = 5, **overrides) -> nn.Module:
    return build_model(method, TINY, num_classes=num_classes, num_frames=num_frames, random_init=True,
                       method_options=tiny_options(method, **overrides))


def randomise_trainable(model: nn.Module, generator: torch.Generator) -> None:
    """Give the zero-initialised parts (adapter convs, up-projections, embeddings...) real values."""
    with torch.no_grad():
        for _, param in model.trainable_named_parameters():
            param.copy_(torch.randn(param.shape, generator=generator, dtype=param.dtype) * 0.2)


def video(batch: int = 2, frames: int = 4, seed: int = 0, dtype=torch.float32) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 3, frames, 32, 32, generator=g, dtype=dtype)


def clip_b16_trainable(method: str, options: dict, num_classes: int, num_frames: int = 8) -> int:
    """Trainable parameters of ``method`` on CLIP ViT-B/16 (meta device: no memory, no compute)."""
    with torch.device("meta"):
        model = build_model(method, "clip_vit_b16", num_classes, num_frames=num_frames,
                            random_init=True, method_options=options)
    trainable, _ = model.parameter_counts()
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == trainable
    return trainable
