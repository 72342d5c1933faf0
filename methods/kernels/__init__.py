"""Hand-written GPU kernels for the hot spots of adapter training (Triton), each equal to a plain
PyTorch formulation that stays the reference and the CPU path.

A kernel computes the same function as its reference; only the rounding differs (the kernels keep
fp32 inside and round once, where a chain of bf16 PyTorch ops rounds after every op). Nothing here
is switched by a flag: ``methods.fast`` swaps the modules that use these kernels into a built model.
"""
from __future__ import annotations

import torch

try:
    import triton  # noqa: F401
    HAS_TRITON = True
except ImportError:  # CPU-only installs: every op takes its PyTorch formulation
    HAS_TRITON = False


def triton_usable(tensor: torch.Tensor) -> bool:
    """A hand-written Triton kernel should run on this tensor: CUDA, Triton installed, and not
    inside ``torch.compile`` (which generates and fuses its own kernels from the PyTorch formula)."""
    return HAS_TRITON and tensor.is_cuda and not torch.compiler.is_compiling()
