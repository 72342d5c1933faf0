"""TimeSformer-style divided space-time attention (Bertasius et al., ICML 2021) on a frozen image ViT.

Before each chosen block's spatial attention, a temporal branch attends over the T tokens at each
patch location: temporal LayerNorm and attention copied from the block's own norm1/attn (as
TimeSformer initialises from image weights), then a zero-initialised output projection
(``temporal_fc``), so the model starts as the image model. A zero-initialised (1, T, width) temporal
embedding is added to the patch tokens before the first temporal block. Only these new parts and
the head train; the spatial backbone stays frozen.

Learning rate on the synthetic tasks: it trains copies of the pre-trained attention weights and
stays at chance at base lr >= 0.05 (sweep on an earlier 24k-stills backbone, one seed: 0.015-0.04
all gave 29-34% top-1 on the motion task), so it gets 0.03 where the adapters get the recipe's 0.1.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from timm.models.vision_transformer import Block
from torch import nn

from .backbone import BackboneConfig
from .base import MethodConfig, VideoClassifier, last_blocks
from .registry import register_method


class TemporalAttention(nn.Module):
    """Residual attention across frames at each patch location; prefix tokens pass unchanged."""

    def __init__(self, block: Block, num_prefix_tokens: int) -> None:
        super().__init__()
        self.num_prefix_tokens = num_prefix_tokens
        self.temporal_norm = copy.deepcopy(block.norm1)
        self.temporal_attn = copy.deepcopy(block.attn)
        dim = block.norm1.normalized_shape[0]
        self.temporal_fc = nn.Linear(dim, dim)
        nn.init.zeros_(self.temporal_fc.weight)
        nn.init.zeros_(self.temporal_fc.bias)

    def forward(self, x: torch.Tensor, num_frames: int) -> torch.Tensor:
        prefix, patches = x[:, :self.num_prefix_tokens], x[:, self.num_prefix_tokens:]
        clip_frames, tokens, dim = patches.shape
        # [B*T, L, C] -> [B*L, T, C]: one sequence per patch location
        series = patches.reshape(-1, num_frames, tokens, dim).transpose(1, 2).reshape(-1, num_frames, dim)
        update = self.temporal_fc(self.temporal_attn(self.temporal_norm(series)))
        update = update.view(-1, tokens, num_frames, dim).transpose(1, 2).reshape(clip_frames, tokens, dim)
        return torch.cat((prefix, patches + update), dim=1)


class TemporalEmbedding(nn.Module):
    """Adds a learned per-frame vector to the patch tokens; built for a fixed number of frames."""

    def __init__(self, num_frames: int, dim: int, num_prefix_tokens: int) -> None:
        super().__init__()
        self.num_prefix_tokens = num_prefix_tokens
        self.time_embed = nn.Parameter(torch.zeros(1, num_frames, dim))

    def forward(self, x: torch.Tensor, num_frames: int) -> torch.Tensor:
        if num_frames != self.time_embed.shape[1]:
            raise ValueError(f"temporal_attention was built for {self.time_embed.shape[1]} frames "
                             f"but got clips of {num_frames}; build the model with num_frames="
                             f"{num_frames}")
        prefix, patches = x[:, :self.num_prefix_tokens], x[:, self.num_prefix_tokens:]
        clips = patches.view(-1, num_frames, *patches.shape[1:])
        patches = (clips + self.time_embed.unsqueeze(2).to(x.dtype)).flatten(0, 1)
        return torch.cat((prefix, patches), dim=1)


class SlotChain(nn.ModuleList):
    """Several slot modules in one slot, applied in order."""

    def forward(self, x: torch.Tensor, num_frames: int) -> torch.Tensor:
        for module in self:
            x = module(x, num_frames)
        return x


@dataclass(frozen=True)
class TemporalAttentionConfig(MethodConfig):
    """``num_layers``: temporal branches in the last N blocks (None: every block)."""

    num_layers: int | None = None

    def __post_init__(self) -> None:
        if self.num_layers is not None:
            self.require_int("num_layers", 1)

    @property
    def frames_interact(self) -> bool:
        return True

    def check_backbone(self, backbone: BackboneConfig) -> None:
        self.require_layers(backbone)


@register_method("temporal_attention", TemporalAttentionConfig, base_lr={"synth": 0.03})
def attach(model: VideoClassifier, cfg: TemporalAttentionConfig) -> list:
    encoder = model.encoder
    blocks = last_blocks(encoder.depth, cfg.num_layers)
    embedding = TemporalEmbedding(model.num_frames, encoder.width, encoder.num_prefix_tokens)
    branches = []
    for i in blocks:
        branches.append(TemporalAttention(encoder.blocks[i], encoder.num_prefix_tokens))
        encoder.set_slot("pre_attn", SlotChain([embedding, branches[-1]]) if i == blocks[0]
                         else branches[-1], i)
    return [embedding, *branches, model.head]
