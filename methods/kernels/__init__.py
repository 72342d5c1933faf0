"""Fused GPU paths for the hot spots of adapter training, each with its plain PyTorch formulation as
the reference and the CPU path.

A fast path computes the same function as its reference; only the rounding differs (the Triton
kernels keep fp32 inside and round once, where a chain of bf16 PyTorch ops rounds after every op).
``fast_paths(...)`` switches paths off within a block, so tests can compare the two on the same
module and the benchmark can time the "before" in the same process:

* ``adapter``: the bottleneck adapters run fc1/fc2 over every row (no strided copy of the patch
  rows, no ``torch.cat``) and the temporal conv as one Triton kernel per direction;
* ``quick_gelu``: ``FusedQuickGELU`` modules run one kernel per direction and save only their input.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, fields, replace
from typing import Iterator

import torch

try:
    import triton  # noqa: F401
    HAS_TRITON = True
except ImportError:  # CPU-only installs: every op takes its PyTorch formulation
    HAS_TRITON = False


@dataclass(frozen=True)
class FastPaths:
    """Which fast paths are on (all by default)."""

    adapter: bool = True
    quick_gelu: bool = True


_current = FastPaths()


def fast_path_enabled(name: str) -> bool:
    return getattr(_current, name)


@contextmanager
def fast_paths(**flags: bool) -> Iterator[FastPaths]:
    """Set some fast paths on or off within the block, e.g. ``fast_paths(adapter=False)``."""
    global _current
    known = {f.name for f in fields(FastPaths)}
    unknown = sorted(set(flags) - known)
    if unknown:
        raise ValueError(f"unknown fast path(s) {unknown}; known: {sorted(known)}")
    previous = _current
    _current = replace(previous, **flags)
    try:
        yield _current
    finally:
        _current = previous


def reference_paths():
    """Every op in its plain PyTorch formulation (the oracle and the benchmark's "before")."""
    return fast_paths(**{f.name: False for f in fields(FastPaths)})


def triton_usable(tensor: torch.Tensor) -> bool:
    """A hand-written Triton kernel should run on this tensor: CUDA, Triton installed, and not
    inside ``torch.compile`` (which generates and fuses its own kernels from the PyTorch formula)."""
    return HAS_TRITON and tensor.is_cuda and not torch.compiler.is_compiling()
