"""The frame encoder every method attaches to: an image ViT built from timm's VisionTransformer parts.

Frames are encoded independently (the batch is B*T frames); time can only enter through modules a
method inserts at the encoder's sites (``FrameEncoder`` lists them). The pre-trained weights keep
timm's keys whatever is inserted: the backbone's state-dict keys are fixed when the encoder is
built, and everything a method adds lives under keys of its own.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Callable, Iterator, NamedTuple, Sequence

import torch
from timm.layers import PatchEmbed, QuickGELU
from timm.models.vision_transformer import VisionTransformer
from torch import nn
from torch.nn import functional as F

ACTIVATIONS: dict[str, type[nn.Module]] = {"quick_gelu": QuickGELU, "gelu": nn.GELU}
# The pixel statistics the weights were trained with: frames are normalised by the backbone's own.
CLIP_MEAN, CLIP_STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
INCEPTION_MEAN = INCEPTION_STD = (0.5, 0.5, 0.5)  # timm's augreg ViTs
INTERPOLATIONS = ("bicubic",)  # the suite's CPU and GPU resizes implement Pillow's bicubic filter


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
    mean: tuple[float, float, float] = CLIP_MEAN  # the weights' input normalisation and resize filter
    std: tuple[float, float, float] = CLIP_STD
    interpolation: str = "bicubic"

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
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise BackboneError(f"backbone {self.name!r}: mean and std need 3 channels, std > 0")
        if self.interpolation not in INTERPOLATIONS:
            raise BackboneError(f"backbone {self.name!r}: interpolation={self.interpolation!r}; choose one "
                                f"of {INTERPOLATIONS}")

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
                       norm_eps=1e-6, patch_bias=True, mean=INCEPTION_MEAN, std=INCEPTION_STD),
        # The embedded default's image model, pre-trained on synthetic stills (bench.engine.pretrain):
        # 32 px frames in 4x4 patches of 8 px (17 tokens), width 64, 4 blocks, ~3.3 MFLOPs per frame.
        _clip("synth_vit", 32, 8, 64, 4, 4),
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


BLOCK_SLOTS = ("pre_attn", "pre_mlp")
BRANCHES = ("attn", "mlp")
PROJECTIONS = ("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2")


class EmptySlot(nn.Identity):
    """A slot with nothing inserted; takes the slot call signature ``(x, num_frames)``."""

    def forward(self, x: torch.Tensor, num_frames: int) -> torch.Tensor:
        return x


class Branch(NamedTuple):
    """A block's frozen residual branch: its LayerNorm and its sublayer (attention or MLP)."""

    norm: nn.Module
    sublayer: nn.Module

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.sublayer(self.norm(x))


class PlainBranch(nn.Identity):
    """A residual branch with nothing wrapped around it: the block's own ``sublayer(norm(x))``."""

    def forward(self, x: torch.Tensor, num_frames: int, branch: Branch) -> torch.Tensor:
        return branch(x)


class ParallelBranch(nn.Module):
    """``sublayer(h) + side(h, num_frames)`` with ``h = norm(x)``: a module beside a frozen sublayer,
    reading the same normalised input (as AIM's MLP adapter does)."""

    def __init__(self, side: nn.Module) -> None:
        super().__init__()
        self.side = side

    def forward(self, x: torch.Tensor, num_frames: int, branch: Branch) -> torch.Tensor:
        hidden = branch.norm(x)
        return branch.sublayer(hidden) + self.side(hidden, num_frames)


class WrappedLinear(nn.Module):
    """A frozen projection with a method's module around it.

    The Linear's parameters stay under their own keys (``weight``, ``bias``), so pre-trained weights
    load as before; the method's module sits under its own name and is called as
    ``module(x, linear)``, where ``linear(x)`` is the frozen projection.
    """

    def __init__(self, linear: nn.Linear, name: str, module: nn.Module) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.weight = linear.weight
        self.bias = linear.bias
        self.name = name
        self.add_module(name, module)

    @property
    def wrapper(self) -> nn.Module:
        return self._modules[self.name]

    def linear(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.wrapper(x, self.linear)

    def unwrapped(self) -> nn.Linear:
        """A plain Linear holding the same parameters."""
        linear = nn.Linear(self.in_features, self.out_features, bias=self.bias is not None, device="meta")
        linear.weight = self.weight
        linear.bias = self.bias
        return linear


def _patch_embed_with_bias(bias: bool) -> Callable[..., PatchEmbed]:
    """timm ties the patch bias to ``pre_norm``; the config sets it on its own."""
    def make(**kwargs) -> PatchEmbed:
        return PatchEmbed(**{**kwargs, "bias": bias})
    return make


class EncoderSiteError(ValueError):
    """A method inserted a module where the encoder has no site, or where one already sits."""


class BlockFeatures(NamedTuple):
    """What a side network reads from one block: the residual stream after the block (every token,
    [B*T, L, C]) and the output of the block's qkv projection ([B*T, L, 3C]: q, k, v side by side,
    each head's channels contiguous, as the attention splits them)."""

    tokens: torch.Tensor
    qkv: torch.Tensor


class FrameEncoder(nn.Module):
    """A ViT over a batch of frames that returns each frame's CLS token before the final LayerNorm.

    The modules are those of a timm ``VisionTransformer`` built from the config (so the state-dict
    keys are timm's: ``patch_embed.proj``, ``cls_token``, ``pos_embed``, ``norm_pre``, ``blocks.i.*``,
    ``norm``); its head, pooling and dropouts are not kept. The blocks are run here rather than
    through ``Block.forward`` so that methods can insert modules at these sites (``x`` is
    [B*T, tokens, width], frames of a clip contiguous):

    * slots on the residual stream, ``module(x, num_frames) -> x``: ``post_embed`` (after patch,
      CLS and position embeddings, before ``norm_pre``; keys ``post_embed.*``), and per block
      ``pre_attn`` / ``pre_mlp`` (before the sublayer's LayerNorm; keys ``pre_attn.{i}.*``);
    * residual branches, per block ``attn`` / ``mlp``: ``module(x, num_frames, branch) -> delta``
      replaces ``branch(x) = sublayer(norm(x))`` in ``x + branch(x)`` (keys ``attn_branch.{i}.*``);
      ``add_parallel`` puts a module beside the sublayer on the same normalised input;
    * projections, per block ``attn.qkv``, ``attn.proj``, ``mlp.fc1``, ``mlp.fc2``:
      ``module(x, linear) -> y`` replaces ``linear(x)`` (keys ``blocks.{i}.attn.qkv.<name>.*``).

    With nothing inserted every site is a parameter-free pass-through. ``block_features`` reads the
    intermediate features a side network needs (e.g. EVL's decoder) without changing anything.
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
        self.post_embed = EmptySlot()
        self.pre_attn = nn.ModuleList(EmptySlot() for _ in range(cfg.depth))
        self.attn_branch = nn.ModuleList(PlainBranch() for _ in range(cfg.depth))
        self.pre_mlp = nn.ModuleList(EmptySlot() for _ in range(cfg.depth))
        self.mlp_branch = nn.ModuleList(PlainBranch() for _ in range(cfg.depth))
        self._backbone_keys = frozenset(self.state_dict())

    def backbone_state_keys(self) -> set[str]:
        """State-dict keys that pre-trained image weights provide: those the encoder had when built."""
        return set(self._backbone_keys)

    # -- sites ----------------------------------------------------------------------------------

    def _block(self, site: str, block: int) -> int:
        if isinstance(block, bool) or not isinstance(block, int) or not 0 <= block < self.depth:
            raise EncoderSiteError(f"site {site!r}: block={block!r} is not a block index of this "
                                   f"{self.depth}-block encoder (0..{self.depth - 1})")
        return block

    def set_slot(self, site: str, module: nn.Module, block: int | None = None) -> None:
        """Put ``module(x, num_frames) -> x`` on the residual stream at ``post_embed`` (block None)
        or at ``pre_attn`` / ``pre_mlp`` of ``block``."""
        if site == "post_embed" and block is None:
            current, place = self.post_embed, lambda: setattr(self, "post_embed", module)
        elif site in BLOCK_SLOTS:
            slots = getattr(self, site)
            i = self._block(site, block)
            current, place = slots[i], lambda: slots.__setitem__(i, module)
        else:
            raise EncoderSiteError(f"no residual-stream slot {site!r} (block={block!r}); slots: "
                                   f"'post_embed' (block=None), {BLOCK_SLOTS} (block=index)")
        if not isinstance(current, EmptySlot):
            raise EncoderSiteError(f"slot {site!r} of block {block} already holds a "
                                   f"{type(current).__name__}; chain both in one module")
        place()

    def wrap_branch(self, site: str, block: int, module: nn.Module) -> None:
        """Replace block ``block``'s residual branch ``site`` ("attn" or "mlp") by
        ``module(x, num_frames, branch) -> delta``; ``branch`` is the frozen norm + sublayer."""
        if site not in BRANCHES:
            raise EncoderSiteError(f"no residual branch {site!r}; branches: {BRANCHES}")
        branches = getattr(self, f"{site}_branch")
        i = self._block(site, block)
        if not isinstance(branches[i], PlainBranch):
            raise EncoderSiteError(f"branch {site!r} of block {i} is already wrapped by a "
                                   f"{type(branches[i]).__name__}; combine both in one module")
        branches[i] = module

    def add_parallel(self, site: str, block: int, module: nn.Module) -> None:
        """Add ``module(h, num_frames)`` beside the sublayer of branch ``site``, on its input
        ``h = norm(x)``: the branch becomes ``sublayer(h) + module(h, num_frames)``."""
        self.wrap_branch(site, block, ParallelBranch(module))

    def _projection(self, site: str, block: int) -> tuple[nn.Module, str]:
        if site not in PROJECTIONS:
            raise EncoderSiteError(f"no projection {site!r}; projections: {PROJECTIONS}")
        sublayer, attr = site.split(".")
        return getattr(self.blocks[self._block(site, block)], sublayer), attr

    def projection(self, site: str, block: int) -> nn.Module:
        """The module at projection ``site`` of ``block``: its Linear, or the WrappedLinear around it."""
        parent, attr = self._projection(site, block)
        return getattr(parent, attr)

    def wrap_projection(self, site: str, block: int, name: str, module: nn.Module) -> None:
        """Replace projection ``site`` of ``block`` by ``module(x, linear) -> y``; ``module``'s
        parameters get the keys ``blocks.{block}.{site}.{name}.*`` (the frozen weights keep theirs)."""
        parent, attr = self._projection(site, block)
        linear = getattr(parent, attr)
        if isinstance(linear, WrappedLinear):
            raise EncoderSiteError(f"projection {site!r} of block {block} is already wrapped by "
                                   f"{linear.name!r}; combine both in one module")
        if not name.isidentifier() or name in ("weight", "bias"):
            raise EncoderSiteError(f"wrapper name {name!r} must be an identifier other than "
                                   "'weight' and 'bias' (use the method's name)")
        setattr(parent, attr, WrappedLinear(linear, name, module))

    def unwrap_projection(self, site: str, block: int) -> nn.Module:
        """Undo ``wrap_projection``: the plain Linear returns; the removed module is returned."""
        parent, attr = self._projection(site, block)
        wrapped = getattr(parent, attr)
        if not isinstance(wrapped, WrappedLinear):
            raise EncoderSiteError(f"projection {site!r} of block {block} is not wrapped")
        setattr(parent, attr, wrapped.unwrapped())
        return wrapped.wrapper

    # -- forward --------------------------------------------------------------------------------

    def embed(self, frames: torch.Tensor) -> torch.Tensor:
        """Patch, CLS and position embeddings (before ``norm_pre``)."""
        x = self.patch_embed(frames)
        return torch.cat((self.cls_token.expand(x.shape[0], -1, -1), x), dim=1) + self.pos_embed

    def block_outputs(self, frames: torch.Tensor, num_frames: int) -> Iterator[torch.Tensor]:
        """The residual stream after each block, block by block (stop early by leaving the loop)."""
        x = self.norm_pre(self.post_embed(self.embed(frames), num_frames))
        for block, pre_attn, attn, pre_mlp, mlp in zip(self.blocks, self.pre_attn, self.attn_branch,
                                                       self.pre_mlp, self.mlp_branch):
            x = pre_attn(x, num_frames)
            x = x + attn(x, num_frames, Branch(block.norm1, block.attn))
            x = pre_mlp(x, num_frames)
            x = x + mlp(x, num_frames, Branch(block.norm2, block.mlp))
            yield x

    def forward(self, frames: torch.Tensor, num_frames: int) -> torch.Tensor:
        """frames [B*T, 3, H, W] (frame-major within a clip) -> CLS tokens [B*T, width]."""
        for x in self.block_outputs(frames, num_frames):
            pass
        return x[:, 0]

    def block_features(self, frames: torch.Tensor, num_frames: int,
                       blocks: Sequence[int]) -> list[BlockFeatures]:
        """``BlockFeatures`` of each of ``blocks`` (in that order), as the forward computes them.

        The qkv output is read by a forward hook on the projection, held for this call only, so it is
        what the block's attention really used, whatever wraps the projection or the attention; blocks
        after the last one asked for are not run.
        """
        wanted = [self._block("block_features", b) for b in blocks]
        if not wanted:
            raise EncoderSiteError("block_features: name at least one block")
        qkv: dict[int, torch.Tensor] = {}

        def keep(block: int, module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
            qkv[block] = output

        hooks = [self.projection("attn.qkv", i).register_forward_hook(partial(keep, i)) for i in set(wanted)]
        tokens: dict[int, torch.Tensor] = {}
        try:
            for i, x in enumerate(self.block_outputs(frames, num_frames)):
                if i in wanted:
                    tokens[i] = x
                if i == max(wanted):
                    break
        finally:
            for hook in hooks:
                hook.remove()
        return [BlockFeatures(tokens[i], qkv[i]) for i in wanted]
