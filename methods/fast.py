"""Model-level speed and memory changes that keep the function a model computes.

Applied after ``build_model`` (after loading weights, and after counting: counts are of the plain
model) by ``apply_fast_paths``, for the device a model trains on: all of them on CUDA, the patch
embedding alone on a CPU. Nothing reads a global switch, so the plain modules are the reference
forward everywhere else (probes, counting). Every method alike:

* ``fuse_activations``: every QuickGELU becomes ``FusedQuickGELU`` (one kernel per direction, saves
  only its input).
* ``pack_attention_grads``: attention splits q, k, v so that the backward writes the qkv gradient
  in the layout the qkv linear reads (no concatenate-then-copy per block).
* ``patch_embed_as_matmul``: the stride-p patch convolution as one matrix product (on a CPU too:
  without oneDNN, which the portable numerics profile turns off, the convolution runs ATen's
  im2col path forward and backward; as one GEMM, a synthetic ST-Adapter step went from 211 to 151 ms).
* ``use_fast_adapters``: bottleneck adapters run fc1/fc2 over every row (no strided copy of the
  patch rows, no ``torch.cat``) and their temporal conv as one Triton kernel per direction.

Methods with frozen weights:

* ``hold_frozen_in(model, torch.bfloat16)``: frozen weights stored in the autocast dtype (the recipe's
  ``half_frozen``), so the residual stream stays bf16 and frozen LayerNorms run natively in bf16
  instead of casting the stream to fp32 and back; trainable weights stay fp32.
* ``recompute_frozen_mlps``: frozen MLPs keep only their input for the backward and recompute the
  hidden activation (trades one fc1 product per block for the largest saved tensor).
"""
from __future__ import annotations

import torch
from timm.layers import Mlp, PatchEmbed, QuickGELU
from timm.models.vision_transformer import Attention
from torch import nn
from torch.nn import functional as F
from torch.utils.checkpoint import checkpoint

from .bottleneck import BottleneckAdapter
from .kernels import triton_usable
from .kernels.quick_gelu import FusedQuickGELU
from .kernels.temporal_conv import temporal_conv
from .temporal_conv import TemporalDepthwiseConv, temporal_depthwise_conv


class AddToPatchRows(torch.autograd.Function):
    """``x + delta`` on the patch rows, ``x`` on the prefix rows (CLS), in one pass.

    Gives what ``cat((x[:, :p], x[:, p:] + delta[:, p:]), 1)`` gives, without the strided slice,
    the concatenation and, backward, the zero-filled full-size gradients of both slices.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, delta: torch.Tensor, num_prefix: int) -> torch.Tensor:
        out = torch.add(x, delta)
        out[:, :num_prefix] = x[:, :num_prefix]
        ctx.num_prefix, ctx.delta_dtype = num_prefix, delta.dtype
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        grad_delta = grad.to(ctx.delta_dtype, copy=True)
        grad_delta[:, :ctx.num_prefix] = 0
        return grad, grad_delta, None


class FastBottleneckAdapter(BottleneckAdapter):
    """The adapter over every row: CLS too (1 row in 197 of extra work; fc1/fc2 treat rows
    independently and the conv mixes a row only with the same row of other frames), then
    ``AddToPatchRows`` drops the prefix rows' results, so they get no gradient."""

    def forward(self, x: torch.Tensor, num_frames: int) -> torch.Tensor:
        delta = self.fc2(self.act(self._temporal(self.fc1(x), num_frames)))
        return AddToPatchRows.apply(x, delta, self.num_prefix_tokens)


class TritonTemporalConv(TemporalDepthwiseConv):
    """The temporal conv as the Triton kernels of ``methods.kernels.temporal_conv`` where they run."""

    def forward(self, x: torch.Tensor, num_frames: int) -> torch.Tensor:
        clips = x.view(-1, num_frames, *x.shape[1:])
        conv = temporal_conv if triton_usable(clips) else temporal_depthwise_conv
        return conv(clips, self.weight, self.bias).flatten(0, 1)


def use_fast_adapters(model: nn.Module) -> int:
    """Give every bottleneck adapter and temporal conv its fast forward (a temporal conv outside an
    adapter too, as EVL's decoder has); returns how many modules changed."""
    return (_swap_class(model, TemporalDepthwiseConv, TritonTemporalConv)
            + _swap_class(model, BottleneckAdapter, FastBottleneckAdapter))


def fuse_activations(model: nn.Module) -> int:
    """Replace timm ``QuickGELU`` modules by ``FusedQuickGELU``; returns how many."""
    targets = [name for name, module in model.named_modules() if type(module) is QuickGELU]
    for name in targets:
        parent_name, _, attr = name.rpartition(".")
        setattr(model.get_submodule(parent_name), attr, FusedQuickGELU())
    return len(targets)


def _swap_class(model: nn.Module, base: type[nn.Module], new: type[nn.Module]) -> int:
    """Give every module of exactly type ``base`` the subclass ``new`` (same parameters and keys)."""
    count = 0
    for module in model.modules():
        if type(module) is base:
            module.__class__ = new
            count += 1
    return count


class PackedGradAttention(Attention):
    """timm's ``Attention`` with q, k, v split along the "3" axis of [B, N, 3, H, D].

    timm permutes the qkv output to [3, B, H, N, D] before splitting it, so autograd's backward of
    the split concatenates dq, dk, dv into that layout and then copies it again into the [B, N, 3C]
    layout the qkv linear's backward reads: two passes over a 3C-wide tensor per block. Split along
    the "3" axis, the backward stacks the gradients straight into [B, N, 3C]. Same computation.
    """

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None,
                is_causal: bool = False) -> torch.Tensor:
        plain = attn_mask is None and not is_causal and self.fused_attn and getattr(self, "gate", None) is None
        if not plain:
            return super().forward(x, attn_mask=attn_mask, is_causal=is_causal)
        batch, tokens, _ = x.shape
        qkv = self.qkv(x).view(batch, tokens, 3, self.num_heads, self.head_dim)
        q, k, v = (t.transpose(1, 2) for t in qkv.unbind(2))
        q, k = self.q_norm(q), self.k_norm(k)
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=self.attn_drop.p if self.training else 0.0)
        out = self.norm(out.transpose(1, 2).reshape(batch, tokens, -1))
        return self.proj_drop(self.proj(out))


def pack_attention_grads(model: nn.Module) -> int:
    """Give timm ``Attention`` modules the ``PackedGradAttention`` forward; returns how many."""
    return _swap_class(model, Attention, PackedGradAttention)


class MatmulPatchEmbed(PatchEmbed):
    """timm's ``PatchEmbed`` computing its non-overlapping stride-p convolution as one matrix
    product over the unfolded patches (cuDNN ran it as a layout conversion plus a poorly fitting
    kernel, 2 ms per step for 30 GMAC); any other configuration takes timm's path."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = x.shape
        ph, pw = self.patch_size
        plain = (self.flatten and not self.dynamic_img_pad and self.proj.stride == (ph, pw)
                 and self.proj.padding == (0, 0) and height % ph == 0 and width % pw == 0
                 and (not self.strict_img_size or (height, width) == tuple(self.img_size)))
        if not plain:
            return super().forward(x)
        if torch.is_autocast_enabled(x.device.type):  # cast before the unfold copy: half the bytes
            x = x.to(torch.get_autocast_dtype(x.device.type))
        patches = x.view(batch, channels, height // ph, ph, width // pw, pw).permute(0, 2, 4, 1, 3, 5)
        patches = patches.reshape(batch, (height // ph) * (width // pw), channels * ph * pw)
        return self.norm(F.linear(patches, self.proj.weight.flatten(1), self.proj.bias))


def patch_embed_as_matmul(model: nn.Module) -> int:
    """Give timm ``PatchEmbed`` modules the ``MatmulPatchEmbed`` forward; returns how many."""
    return _swap_class(model, PatchEmbed, MatmulPatchEmbed)


class NativeLayerNorm(nn.LayerNorm):
    """A LayerNorm that, when input and weights share a half dtype, runs in it under autocast.

    Autocast runs LayerNorm in fp32: it casts a bf16 input up, writes an fp32 output that the next
    linear casts back down, and keeps the fp32 copy for the backward. PyTorch's bf16 kernel already
    computes in fp32 and rounds the output once, which is what the next linear sees either way.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        half = x.dtype in (torch.float16, torch.bfloat16) and self.weight is not None \
            and self.weight.dtype == x.dtype and torch.is_autocast_enabled(x.device.type)
        if not half:
            return super().forward(x)
        with torch.autocast(x.device.type, enabled=False):
            return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)


def hold_frozen_in(model: nn.Module, dtype: torch.dtype) -> int:
    """Store every frozen parameter in ``dtype``; returns how many parameters were cast."""
    cast = 0
    for param in model.parameters():
        if not param.requires_grad and param.dtype != dtype:
            param.data = param.data.to(dtype)
            cast += 1
    for module in model.modules():
        if type(module) is nn.LayerNorm and module.weight is not None and not module.weight.requires_grad:
            module.__class__ = NativeLayerNorm
    return cast


class RecomputedMLP(Mlp):
    """timm's ``Mlp`` under activation checkpointing whenever a gradient flows through it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() and x.requires_grad:
            return checkpoint(super().forward, x, use_reentrant=False)
        return super().forward(x)


def recompute_frozen_mlps(model: nn.Module) -> int:
    """Checkpoint every timm ``Mlp`` whose weights are all frozen; returns how many."""
    count = 0
    for module in model.modules():
        if type(module) is Mlp and not any(p.requires_grad for p in module.parameters()):
            module.__class__ = RecomputedMLP
            count += 1
    return count


FAST_PATHS = {"fused_quick_gelu": fuse_activations, "packed_attention_grads": pack_attention_grads,
              "matmul_patch_embed": patch_embed_as_matmul, "fast_adapters": use_fast_adapters}
CPU_FAST_PATHS = {"matmul_patch_embed": patch_embed_as_matmul}


def apply_fast_paths(model: nn.Module, device_type: str = "cuda") -> list[str]:
    """Every function-preserving speed-up above that pays on ``device_type``, for a model about to
    train there; returns the names of those that found something to change (a record lists them)."""
    paths = FAST_PATHS if device_type == "cuda" else CPU_FAST_PATHS
    return [name for name, apply in paths.items() if apply(model)]
