"""QuickGELU, ``x * sigmoid(1.702 x)`` (CLIP's MLP activation), as one kernel per direction that saves
only its input.

In eager PyTorch the formula is three kernels forward (scale, sigmoid, multiply) and more backward,
each a full pass over the [frames x tokens x 4C] MLP hidden tensor (the largest activation of the
model), and autograd keeps two of those tensors (x and the sigmoid) per block for the backward.
"""
from __future__ import annotations

import torch
from torch import nn

from . import HAS_TRITON, triton_usable

ALPHA = 1.702

if HAS_TRITON:
    import triton
    import triton.language as tl

    @triton.jit
    def _quick_gelu_fwd_kernel(x_ptr, y_ptr, n, BLOCK: tl.constexpr):
        offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < n
        x = tl.load(x_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        y = x * tl.sigmoid(1.702 * x)
        tl.store(y_ptr + offs, y.to(y_ptr.dtype.element_ty), mask=mask)

    @triton.jit
    def _quick_gelu_bwd_kernel(x_ptr, g_ptr, gx_ptr, n, BLOCK: tl.constexpr):
        offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < n
        x = tl.load(x_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        g = tl.load(g_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        s = tl.sigmoid(1.702 * x)
        gx = g * s * (1.0 + 1.702 * x * (1.0 - s))
        tl.store(gx_ptr + offs, gx.to(gx_ptr.dtype.element_ty), mask=mask)


BLOCK, NUM_WARPS = 2048, 8


def quick_gelu_forward(x: torch.Tensor) -> torch.Tensor:
    """Kernel forward on a contiguous tensor."""
    y = torch.empty_like(x)
    n = x.numel()
    _quick_gelu_fwd_kernel[(triton.cdiv(n, BLOCK),)](x, y, n, BLOCK=BLOCK, num_warps=NUM_WARPS)
    return y


def quick_gelu_backward(x: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """Kernel input gradient; ``x`` and ``grad`` contiguous, same shape."""
    gx = torch.empty_like(x)
    n = x.numel()
    _quick_gelu_bwd_kernel[(triton.cdiv(n, BLOCK),)](x, grad, gx, n, BLOCK=BLOCK, num_warps=NUM_WARPS)
    return gx


def quick_gelu_reference(x: torch.Tensor) -> torch.Tensor:
    """The plain formula (timm's ``QuickGELU``)."""
    return x * torch.sigmoid(ALPHA * x)


class QuickGELUFunction(torch.autograd.Function):
    """QuickGELU saving only ``x``: the kernels on CUDA, the same algebra in PyTorch elsewhere."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        if triton_usable(x):
            return quick_gelu_forward(x.contiguous())
        return quick_gelu_reference(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        if triton_usable(x):
            return quick_gelu_backward(x.contiguous(), grad.contiguous())
        s = torch.sigmoid(ALPHA * x)
        return grad * s * (1 + ALPHA * x * (1 - s))


class FusedQuickGELU(nn.Module):
    """Drop-in for timm's ``QuickGELU`` (swapped in by ``methods.fast``); the plain formula under
    ``torch.compile``, whose generated kernel fuses it with its neighbours."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.compiler.is_compiling():
            return quick_gelu_reference(x)
        return QuickGELUFunction.apply(x)
