"""Partial fine-tuning: the last k blocks, the final LayerNorm and the head are trained."""
from __future__ import annotations

from dataclasses import dataclass

from .backbone import BackboneConfig
from .base import MethodConfig, VideoClassifier, last_blocks
from .registry import register_method


@dataclass(frozen=True)
class PartialFtConfig(MethodConfig):
    """``num_blocks``: how many of the last blocks to unfreeze (>= 1; 0 would be a linear probe)."""

    num_blocks: int = 1

    def __post_init__(self) -> None:
        self.require_int("num_blocks", 1)

    def check_backbone(self, backbone: BackboneConfig) -> None:
        self.require_layers(backbone, "num_blocks")


@register_method("partial_ft", PartialFtConfig)
def attach(model: VideoClassifier, cfg: PartialFtConfig) -> list:
    encoder = model.encoder
    blocks = [encoder.blocks[i] for i in last_blocks(encoder.depth, cfg.num_blocks)]
    return [*blocks, encoder.norm, model.head]
