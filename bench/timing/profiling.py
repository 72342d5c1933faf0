"""Device time per kernel and kernel category of a few training steps (torch.profiler)."""
from __future__ import annotations

from typing import Any

import torch

from bench.timing.cases import BenchSpec, Case, Setting
from bench.timing.step import (
    compiled,
    make_optimizer,
    prepare_model,
    random_batches,
    release_memory,
    synchronize,
    train_step_fn,
)

KERNEL_CATEGORIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("attention (flash/SDPA)", ("flash", "fmha", "attention", "sdpa")),
    ("matmul (cuBLAS/CUTLASS)", ("gemm", "cutlass", "xmma", "nvjet", "cublas", "sm90_", "wgmma")),
    ("triton: temporal conv", ("_conv_fwd_kernel", "_conv_bwd_kernel")),
    ("triton: quick_gelu", ("_quick_gelu",)),
    ("triton: other (compiled)", ("triton_",)),
    ("layer norm", ("layer_norm", "layernorm")),
    ("optimizer (fused AdamW)", ("adam", "multi_tensor")),
    ("cat / copy / cast", ("cat", "copy", "convert", "to_copy")),
    ("reduction", ("reduce",)),
    ("elementwise", ("elementwise", "vectorized", "unrolled", "pointwise")),
)


def kernel_category(name: str) -> str:
    lowered = name.lower()
    for category, keys in KERNEL_CATEGORIES:
        if any(k in lowered for k in keys):
            return category
    return "other"


def profile(case: Case, setting: Setting, spec: BenchSpec, steps: int = 3) -> dict[str, Any]:
    """Device time per kernel and per kernel category over ``steps`` training steps (after warm-up)."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile
    device = torch.device(spec.device)
    model = prepare_model(case, setting, spec)
    optimizer = make_optimizer(model, spec.lr, device)
    runner = compiled(model) if setting.compile else model
    batches = random_batches(spec, device)
    step = train_step_fn(runner, optimizer, spec, device)
    for i in range(spec.warmup_steps):
        step(batches[i % 2])
    synchronize(device)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with torch_profile(activities=activities) as prof:
        for i in range(steps):
            step(batches[i % 2])
        synchronize(device)
    del model, runner, optimizer, batches
    release_memory(device)
    kernels: dict[str, tuple[float, int]] = {}
    for event in prof.key_averages():
        if _is_device_event(event):
            total = _device_time_us(event)
            kernels[event.key] = (total / steps / 1e3, event.count // steps)
    categories: dict[str, float] = {}
    for name, (ms, _) in kernels.items():
        categories[kernel_category(name)] = categories.get(kernel_category(name), 0.0) + ms
    top = sorted(kernels.items(), key=lambda kv: -kv[1][0])
    return {"label": case.label, "setting": setting.name,
            "device_ms_per_step": sum(ms for ms, _ in kernels.values()),
            "categories_ms": dict(sorted(categories.items(), key=lambda kv: -kv[1])),
            "top_kernels": [{"name": n, "ms": ms, "calls": calls} for n, (ms, calls) in top[:40]],
            "table": prof.key_averages().table(sort_by=_sort_key(device), row_limit=40)}


def _is_device_event(event) -> bool:
    device_type = getattr(event, "device_type", None)
    return device_type is not None and device_type.name in ("CUDA", "PrivateUse1") \
        and _device_time_us(event) > 0


def _device_time_us(event) -> float:
    for attr in ("self_device_time_total", "self_cuda_time_total"):
        if hasattr(event, attr):
            return float(getattr(event, attr))
    return 0.0


def _sort_key(device: torch.device) -> str:
    return "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"


def format_profile(result: dict[str, Any]) -> str:
    lines = [f"### {result['label']} ({result['setting']}): {result['device_ms_per_step']:.1f} ms "
             "of kernels per step", "", "| kernel category | ms/step |", "|---|---:|"]
    lines += [f"| {c} | {ms:.2f} |" for c, ms in result["categories_ms"].items()]
    lines += ["", "| top kernels | ms/step | calls/step |", "|---|---:|---:|"]
    lines += [f"| `{k['name'][:90]}` | {k['ms']:.2f} | {k['calls']} |" for k in result["top_kernels"][:20]]
    return "\n".join(lines) + "\n"
