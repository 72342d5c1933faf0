"""TimeSformer-style divided space-time attention (Bertasius et al., ICML 2021) on a frozen image ViT.

Before each chosen block's spatial attention, a temporal branch attends over the T tokens at each
patch location: temporal LayerNorm and attention copied from the block's own norm1/attn (as
TimeSformer initialises from image weights), then a zero-initialised output projection
(``temporal_fc``), so the model starts as the image model. A zero-initialised (1, T, width) temporal
embedding is added to the patch tokens before the first temporal block. Only these new parts and
the head train; the spatial backbone stays frozen.

The CLS token: TimeSformer keeps one CLS per video; in every block each frame's copy attends over
its frame, and the copies' attention outputs are averaged into the one token's update. This suite's
encoder keeps a CLS per frame until the head's mean over time, which is the default here
(``video_cls=False``: the model starts as the image model and the head is the shared one).
``video_cls=True`` does what TimeSformer does: the frames' CLS tokens become their clip mean before
the first temporal block and every temporal block's CLS update is the clip mean of the frames'
updates, so all frames carry the same video CLS (and the head's mean over time is that token).

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
from .temporal import TemporalEmbedding, frame_major, time_major


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
        series = time_major(patches, num_frames)  # one sequence per patch location
        update = self.temporal_fc(self.temporal_attn(self.temporal_norm(series)))
        return torch.cat((prefix, patches + frame_major(update, patches.shape[1])), dim=1)


def clip_mean_prefix(x: torch.Tensor, num_frames: int, num_prefix_tokens: int) -> torch.Tensor:
    """``x`` [B*T, L, C] with each frame's prefix tokens replaced by their mean over its clip."""
    prefix = x[:, :num_prefix_tokens]
    mean = prefix.view(-1, num_frames, *prefix.shape[1:]).mean(dim=1, keepdim=True)
    return torch.cat((mean.expand(-1, num_frames, -1, -1).flatten(0, 1), x[:, num_prefix_tokens:]), dim=1)


class VideoClsToken(nn.Module):
    """Slot: the frames' CLS tokens become one video CLS (their clip mean)."""

    def __init__(self, num_prefix_tokens: int) -> None:
        super().__init__()
        self.num_prefix_tokens = num_prefix_tokens

    def forward(self, x: torch.Tensor, num_frames: int) -> torch.Tensor:
        return clip_mean_prefix(x, num_frames, self.num_prefix_tokens)


class VideoClsAttention(nn.Module):
    """Attention branch: the frozen spatial attention, with the video CLS's update the clip mean of
    what each frame's copy of it gathered (TimeSformer's divided attention)."""

    def __init__(self, num_prefix_tokens: int) -> None:
        super().__init__()
        self.num_prefix_tokens = num_prefix_tokens

    def forward(self, x: torch.Tensor, num_frames: int, branch) -> torch.Tensor:
        return clip_mean_prefix(branch(x), num_frames, self.num_prefix_tokens)


class SlotChain(nn.ModuleList):
    """Several slot modules in one slot, applied in order."""

    def forward(self, x: torch.Tensor, num_frames: int) -> torch.Tensor:
        for module in self:
            x = module(x, num_frames)
        return x


@dataclass(frozen=True)
class TemporalAttentionConfig(MethodConfig):
    """``num_layers``: temporal branches in the last N blocks (None: every block); ``video_cls``:
    TimeSformer's one CLS per video instead of one per frame (see the module docstring)."""

    num_layers: int | None = None
    video_cls: bool = False

    def __post_init__(self) -> None:
        if self.num_layers is not None:
            self.require_int("num_layers", 1)
        if not isinstance(self.video_cls, bool):
            raise self.fail("video_cls", self.video_cls, "expected true (one CLS per video, as "
                                                         "TimeSformer) or false (one per frame)")

    @property
    def frames_interact(self) -> bool:
        return True

    @property
    def starts_as_image_model(self) -> bool:
        return not self.video_cls

    def check_backbone(self, backbone: BackboneConfig) -> None:
        self.require_layers(backbone)


@register_method("temporal_attention", TemporalAttentionConfig, base_lr={"synth": 0.03})
def attach(model: VideoClassifier, cfg: TemporalAttentionConfig) -> list:
    encoder = model.encoder
    blocks = last_blocks(encoder.depth, cfg.num_layers)
    embedding = TemporalEmbedding(model.num_frames, encoder.width, encoder.num_prefix_tokens)
    prefix = encoder.num_prefix_tokens
    branches = []
    for i in blocks:
        branches.append(TemporalAttention(encoder.blocks[i], prefix))
        first = [embedding, *([VideoClsToken(prefix)] if cfg.video_cls else [])]
        encoder.set_slot("pre_attn", SlotChain([*first, branches[-1]]) if i == blocks[0] else branches[-1], i)
        if cfg.video_cls:
            encoder.wrap_branch("attn", i, VideoClsAttention(prefix))
    return [embedding, *branches, model.head]
