"""The frame encoder every method attaches to: an image ViT built from timm's VisionTransformer parts.

Frames are encoded independently (the batch is B*T frames); time can only enter through modules a
method puts into the per-block slots ``pre_attn`` / ``pre_mlp``, which act on the residual stream
right before the attention's / the MLP's LayerNorm (where ST-Adapter places its adapters).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Callable

import torch
from torch import nn
from timm.layers import PatchEmbed, QuickGELU
from timm.models.vision_transformer import VisionTransformer

ACTIVATIONS: dict[str, type[nn.Module]] = {"quick_gelu": QuickGELU, "gelu": nn.GELU}


class BackboneError(ValueError):
    """An unknown backbone name or an inconsistent backbone configuration."""


@dataclass(frozen=True)
class BackboneConfig:
    """Architecture of the frame encoder (a ViT with a class token and learned position embedding)."""

    name: str
    img_size: int
    patch_size: int
    width: int
    depth: int
    heads: int
    mlp_ratio: float = 4.0
    act: str = "quick_gelu"
    pre_norm: bool = True
    norm_eps: float = 1e-5
    patch_bias: bool = False

    def __post_init__(self) -> None:
        for field in ("img_size", "patch_size", "width", "depth", "heads"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise BackboneError(f"backbone {self.name!r}: {field}={value!r} must be a positive int")
        if self.img_size % self.patch_size:
            raise BackboneError(f"backbone {self.name!r}: img_size={self.img_size} is not a multiple "
                                f"of patch_size={self.patch_size}")
        if self.width % self.heads:
            raise BackboneError(f"backbone {self.name!r}: width={self.width} is not divisible by "
                                f"heads={self.heads}")
        if self.act not in ACTIVATIONS:
            raise BackboneError(f"backbone {self.name!r}: act={self.act!r}; choose one of "
                                f"{sorted(ACTIVATIONS)}")

    @property
    def num_patches(self) -> int:
        return (self.img_size // self.patch_size) ** 2


def _clip(name: str, img_size: int, patch_size: int, width: int, depth: int, heads: int,
          act: str = "quick_gelu") -> BackboneConfig:
    """CLIP's visual tower: LayerNorm before the blocks, eps 1e-5, bias-free patch embedding."""
    return BackboneConfig(name, img_size, patch_size, width, depth, heads, act=act)


_BACKBONES: dict[str, BackboneConfig] = {
    cfg.name: cfg for cfg in (
        # OpenAI weights need QuickGELU; open_clip's LAION/DataComp weights were trained with GELU.
        _clip("clip_vit_b16", 224, 16, 768, 12, 12),
        _clip("clip_vit_l14", 224, 14, 1024, 24, 16),
        _clip("clip_vit_b16_gelu", 224, 16, 768, 12, 12, act="gelu"),
        _clip("clip_vit_l14_gelu", 224, 14, 1024, 24, 16, act="gelu"),
        # timm's ImageNet-21k ViT-B/16 (augreg): GELU, eps 1e-6, patch bias, no pre-norm.
        BackboneConfig("vit_b16_in21k", 224, 16, 768, 12, 12, act="gelu", pre_norm=False,
                       norm_eps=1e-6, patch_bias=True),
        # Tiny CLIP-style encoder for fast CPU tests: 4x4 patches + CLS, 4 blocks.
        _clip("vit_tiny_test", 32, 8, 64, 4, 4),
    )
}


def register_backbone(cfg: BackboneConfig) -> None:
    """Make ``cfg`` available by name; re-registering the identical config is a no-op."""
    known = _BACKBONES.get(cfg.name)
    if known is not None and known != cfg:
        raise BackboneError(f"backbone {cfg.name!r} is already registered with a different "
                            f"configuration ({known}); pick another name")
    _BACKBONES[cfg.name] = cfg


def get_backbone_config(name: str) -> BackboneConfig:
    try:
        return _BACKBONES[name]
    except KeyError:
        raise BackboneError(f"unknown backbone {name!r}; known backbones: {sorted(_BACKBONES)} "
                            "(or register one with methods.backbone.register_backbone)") from None


def list_backbones() -> list[str]:
    return sorted(_BACKBONES)


class EmptySlot(nn.Identity):
    """A slot with nothing inserted; takes the slot call signature ``(x, num_frames)``."""

    def forward(self, x: torch.Tensor, num_frames: int) -> torch.Tensor:
        return x


def _patch_embed_with_bias(bias: bool) -> Callable[..., PatchEmbed]:
    """timm ties the patch bias to ``pre_norm``; the config sets it on its own."""
    def make(**kwargs) -> PatchEmbed:
        return PatchEmbed(**{**kwargs, "bias": bias})
    return make


class FrameEncoder(nn.Module):
    """A ViT over a batch of frames that returns each frame's CLS token before the final LayerNorm.

    The modules are those of a timm ``VisionTransformer`` built from the config (so the state-dict
    keys are timm's: ``patch_embed.proj``, ``cls_token``, ``pos_embed``, ``norm_pre``, ``blocks.i.*``,
    ``norm``); its head, pooling and dropouts are not kept. The blocks are run here rather than
    through ``Block.forward`` so that methods can insert modules between the block's sublayers.
    Slot modules are called as ``module(x, num_frames)`` with ``x`` of shape [B*T, tokens, width].
    """

    def __init__(self, cfg: BackboneConfig) -> None:
        super().__init__()
        vit = VisionTransformer(
            img_size=cfg.img_size, patch_size=cfg.patch_size, embed_dim=cfg.width, depth=cfg.depth,
            num_heads=cfg.heads, mlp_ratio=cfg.mlp_ratio, qkv_bias=True, pre_norm=cfg.pre_norm,
            num_classes=0, global_pool="token", class_token=True,
            norm_layer=partial(nn.LayerNorm, eps=cfg.norm_eps), act_layer=ACTIVATIONS[cfg.act],
            embed_layer=_patch_embed_with_bias(cfg.patch_bias),
        )
        self.config = cfg
        self.width = cfg.width
        self.depth = cfg.depth
        self.num_prefix_tokens = vit.num_prefix_tokens
        self.patch_embed = vit.patch_embed
        self.cls_token = vit.cls_token
        self.pos_embed = vit.pos_embed
        self.norm_pre = vit.norm_pre
        self.blocks = vit.blocks
        self.norm = vit.norm
        self.pre_attn = nn.ModuleList(EmptySlot() for _ in range(cfg.depth))
        self.pre_mlp = nn.ModuleList(EmptySlot() for _ in range(cfg.depth))

    def backbone_state_keys(self) -> set[str]:
        """State-dict keys that pre-trained image weights provide (everything but the slots)."""
        return {k for k in self.state_dict() if not k.startswith(("pre_attn.", "pre_mlp."))}

    def embed(self, frames: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(frames)
        x = torch.cat((self.cls_token.expand(x.shape[0], -1, -1), x), dim=1) + self.pos_embed
        return self.norm_pre(x)

    def forward(self, frames: torch.Tensor, num_frames: int) -> torch.Tensor:
        """frames [B*T, 3, H, W] (frame-major within a clip) -> CLS tokens [B*T, width]."""
        x = self.embed(frames)
        for block, pre_attn, pre_mlp in zip(self.blocks, self.pre_attn, self.pre_mlp):
            x = pre_attn(x, num_frames)
            x = x + block.attn(block.norm1(x))
            x = pre_mlp(x, num_frames)
            x = x + block.mlp(block.norm2(x))
        return x[:, 0]
