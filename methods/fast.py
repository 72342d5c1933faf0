"""Model-level speed and memory changes that keep the function a model computes.

Applied after ``build_model`` (and after loading weights), in this order:

* ``fuse_activations``: every QuickGELU becomes ``FusedQuickGELU`` (one kernel per direction, saves
  only its input); applies to every method alike.
* ``hold_frozen_in(model, torch.bfloat16)``: frozen weights stored in the autocast dtype (the recipe's
  ``half_frozen``), so the residual stream stays bf16 and frozen LayerNorms run natively in bf16
  instead of casting the stream to fp32 and back; trainable weights stay fp32.
* ``recompute_frozen_mlps``: frozen MLPs keep only their input for the backward and recompute the
  hidden activation (trades one fc1 product per block for the largest saved tensor).
"""
from __future__ import annotations

import torch
from timm.layers import Mlp, QuickGELU
from torch import nn
from torch.nn import functional as F
from torch.utils.checkpoint import checkpoint

from .kernels.quick_gelu import FusedQuickGELU


def fuse_activations(model: nn.Module) -> int:
    """Replace timm ``QuickGELU`` modules by ``FusedQuickGELU``; returns how many."""
    targets = [name for name, module in model.named_modules() if type(module) is QuickGELU]
    for name in targets:
        parent_name, _, attr = name.rpartition(".")
        setattr(model.get_submodule(parent_name), attr, FusedQuickGELU())
    return len(targets)


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
            module.__class__ = NativeLayerNorm  # same parameters and state-dict keys
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
            module.__class__ = RecomputedMLP  # same parameters and state-dict keys
            count += 1
    return count
