"""Micro-benchmarks: each fast-path piece alone against its reference formulation."""
from __future__ import annotations

import copy
import statistics
from typing import Any, Callable

import torch
from torch import nn

from bench.timing.cases import BenchSpec
from bench.timing.step import StepTimer, bench_autocast


def _median_ms(fn: Callable[[], Any], timer: StepTimer, warmup: int = 5, repeats: int = 20) -> float:
    for _ in range(warmup):
        fn()
    return statistics.median(timer(fn) for _ in range(repeats))


def micro_benchmarks(spec: BenchSpec) -> list[dict[str, Any]]:
    """Forward + backward of each fast-path piece against its reference, at the benchmark's sizes:
    the plain module, and a copy of it with ``methods.fast``'s form (the same weights)."""
    from timm.layers import QuickGELU

    from methods.bottleneck import BottleneckAdapter
    from methods.fast import fuse_activations, use_fast_adapters
    from methods.temporal_conv import TemporalDepthwiseConv

    device = torch.device(spec.device)
    timer = StepTimer(device)
    frames = spec.batch_size * spec.num_frames
    rows = (spec.input_size // 16) ** 2 + 1
    g = torch.Generator(device=device).manual_seed(3)

    def fwd_bwd(module: nn.Module, x: torch.Tensor, *extra: Any) -> Callable[[], None]:
        grad = torch.randn(module(x, *extra).shape, generator=g, device=device, dtype=x.dtype)
        return lambda: module(x, *extra).backward(grad)

    def both(module: nn.Module, make_fast: Callable[[nn.Module], int]) -> dict[str, nn.Module]:
        holder = nn.Sequential(copy.deepcopy(module))  # the swaps act on a module's children
        make_fast(holder)
        return {"reference": module, "fast": holder[0]}

    conv = TemporalDepthwiseConv(384, 3).to(device)
    adapter = BottleneckAdapter(768, 384, 3, activation=False, zero_init="conv").to(device)
    with torch.no_grad():
        for p in (*conv.parameters(), *adapter.parameters()):
            p.normal_(0, 0.02, generator=g)
    bf16 = dict(device=device, dtype=torch.bfloat16, requires_grad=True)
    pieces = {
        "temporal conv [B*T,197,384] bf16": (both(conv, use_fast_adapters),
                                             torch.randn(frames, rows, 384, generator=g, **bf16), (spec.num_frames,)),
        "quick_gelu [B*T,197,3072] bf16": (both(QuickGELU(), fuse_activations),
                                           torch.randn(frames, rows, 3072, generator=g, **bf16), ()),
    }
    results = []
    for name, (modules, x, extra) in pieces.items():
        results.append({"piece": name, **{mode: _median_ms(fwd_bwd(m, x, *extra), timer) for mode, m in modules.items()}})
    adapters = both(adapter, use_fast_adapters)
    for dtype in (torch.float32, torch.bfloat16):
        x = torch.randn(frames, rows, 768, generator=g, device=device, dtype=dtype, requires_grad=True)
        times = {}
        for mode, module in adapters.items():
            with bench_autocast(device, spec):
                times[mode] = _median_ms(fwd_bwd(module, x, spec.num_frames), timer)
        results.append({"piece": f"ST-Adapter 768-384-768 [B*T,197,768] stream {str(dtype)[6:]}", **times})
    return results
