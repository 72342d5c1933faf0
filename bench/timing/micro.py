"""Micro-benchmarks: each fast-path piece alone against its reference formulation."""
from __future__ import annotations

import statistics
from typing import Any, Callable

import torch
from torch import nn

from bench.timing.cases import BenchSpec
from bench.timing.step import StepTimer, bench_autocast
from methods.kernels import fast_paths


def _median_ms(fn: Callable[[], Any], timer: StepTimer, warmup: int = 5, repeats: int = 20) -> float:
    for _ in range(warmup):
        fn()
    return statistics.median(timer(fn) for _ in range(repeats))


def micro_benchmarks(spec: BenchSpec) -> list[dict[str, Any]]:
    """Forward + backward of each fast-path piece against its reference, at the benchmark's sizes."""
    from methods.bottleneck import BottleneckAdapter
    from methods.kernels.quick_gelu import FusedQuickGELU
    from methods.temporal_conv import TemporalDepthwiseConv

    device = torch.device(spec.device)
    timer = StepTimer(device)
    frames = spec.batch_size * spec.num_frames
    rows = (spec.input_size // 16) ** 2 + 1
    g = torch.Generator(device=device).manual_seed(3)

    def fwd_bwd(module: nn.Module, x: torch.Tensor, *extra: Any) -> Callable[[], None]:
        grad = torch.randn(module(x, *extra).shape, generator=g, device=device, dtype=x.dtype)
        return lambda: module(x, *extra).backward(grad)

    conv = TemporalDepthwiseConv(384, 3).to(device)
    adapter = BottleneckAdapter(768, 384, 3, activation=False, zero_init="conv").to(device)
    with torch.no_grad():
        for p in (*conv.parameters(), *adapter.parameters()):
            p.normal_(0, 0.02, generator=g)
    pieces = {
        "temporal conv [B*T,197,384] bf16": (
            conv, torch.randn(frames, rows, 384, generator=g, device=device, dtype=torch.bfloat16,
                              requires_grad=True), "adapter", (spec.num_frames,)),
        "quick_gelu [B*T,197,3072] bf16": (
            FusedQuickGELU(), torch.randn(frames, rows, 3072, generator=g, device=device,
                                          dtype=torch.bfloat16, requires_grad=True), "quick_gelu", ()),
    }
    results = []
    for name, (module, x, path, extra) in pieces.items():
        times = {}
        for mode, on in (("reference", False), ("fast", True)):
            with fast_paths(**{path: on}):
                times[mode] = _median_ms(fwd_bwd(module, x, *extra), timer)
        results.append({"piece": name, **times})
    for dtype in (torch.float32, torch.bfloat16):
        x = torch.randn(frames, rows, 768, generator=g, device=device, dtype=dtype, requires_grad=True)
        times = {}
        for mode, on in (("reference", False), ("fast", True)):
            with fast_paths(adapter=on), bench_autocast(device, spec):
                times[mode] = _median_ms(fwd_bwd(adapter, x, spec.num_frames), timer)
        results.append({"piece": f"ST-Adapter 768-384-768 [B*T,197,768] stream {str(dtype)[6:]}", **times})
    return results
