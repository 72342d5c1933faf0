"""Training and evaluation speed and memory of every method at the paper's setting, on one GPU.

``python -m bench.perf`` builds each method on CLIP ViT-B/16's architecture with random weights (the
speed of a step does not depend on the weight values, as long as none is zero: zero-initialised
adapter parts are given random values so no kernel can shortcut them), feeds 32 clips of 8 frames
at 224 per step under bf16 autocast with fused AdamW over the method's trainable set, and records
the median of the timed steps (CUDA events), clips/s, peak memory and evaluation clips/s. Each
setting (a set of speed changes) is measured for every method in the same process, and every
method's ratio to full fine-tuning is taken against full_ft measured under the same setting.

    python -m bench.perf                       # settings plain, generic and fast, every method
    python -m bench.perf --settings fast --methods st_adapter_12x384,full_ft
    python -m bench.perf --profile st_adapter_12x384,full_ft --profile-dir /tmp/prof --micro

Settings (``SETTINGS``): "plain" is the methods as built; "generic" adds the changes that apply to
every method alike (fused QuickGELU, attention and patch-embedding layouts); "fast" adds the adapter
fast path and frozen weights held in bf16 (full_ft has no frozen weights, so its "fast" is its
"generic"); the rest are ablations, recompute and torch.compile. One JSON record per (setting,
method) goes to ``results/perf/``.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import json
import math
import os
import statistics
import sys
import tempfile
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from bench import provenance
from methods import build_model
from methods.fast import (fuse_activations, hold_frozen_in, pack_attention_grads, patch_embed_as_matmul,
                          recompute_frozen_mlps)
from methods.kernels import fast_paths

PERF_DIR = Path("results/perf")
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


class PerfError(ValueError):
    """A bad command-line choice (unknown method label or setting, impossible device)."""


@dataclass(frozen=True)
class Case:
    """One method configuration to measure."""

    label: str
    method: str
    options: dict[str, Any] = field(default_factory=dict)


CASES: tuple[Case, ...] = (
    Case("full_ft", "full_ft"),
    Case("linear_probe", "linear_probe"),
    Case("partial_ft", "partial_ft", {"num_blocks": 1}),
    Case("st_adapter_12x384", "st_adapter", {"preset": "12x384"}),
    Case("st_adapter_24x384", "st_adapter", {"preset": "24x384"}),
    Case("adapter_12x384", "adapter", {"preset": "12x384"}),
    Case("prompt_tuning_deep50", "prompt_tuning", {"preset": "deep50"}),
    Case("temporal_attention", "temporal_attention"),
)
BASELINE = "full_ft"


@dataclass(frozen=True)
class Setting:
    """A set of speed changes, each applied to every method it can apply to."""

    name: str
    description: str
    fused_activations: bool = False  # QuickGELU as one kernel per direction (every method)
    packed_attention: bool = False  # qkv gradient written in place, no concat + copy (every method)
    matmul_patch_embed: bool = False  # patch convolution as one GEMM (every method)
    fast_adapter: bool = False  # adapters without slice/cat copies, temporal conv as a Triton kernel
    frozen_dtype: str | None = None  # frozen weights held in this dtype (methods with frozen weights)
    recompute_frozen_mlps: bool = False  # checkpoint frozen MLPs (memory for one fc1 per block)
    compile: bool = False  # torch.compile the whole model

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


GENERIC = {"fused_activations": True, "packed_attention": True, "matmul_patch_embed": True}
FAST = {**GENERIC, "fast_adapter": True, "frozen_dtype": "bf16"}

DEFAULT_SETTINGS = ("plain", "generic", "fast")
SETTINGS: dict[str, Setting] = {s.name: s for s in (
    Setting("plain", "the methods as built: eager, fp32 weights under bf16 autocast"),
    Setting("frozen_bf16", "plain + frozen weights held in bf16", frozen_dtype="bf16"),
    Setting("fused_gelu", "plain + fused QuickGELU", fused_activations=True),
    Setting("packed_attention", "plain + qkv gradient without concat/copy", packed_attention=True),
    Setting("matmul_patch_embed", "plain + patch embedding as one GEMM", matmul_patch_embed=True),
    Setting("fast_adapter", "plain + adapter fast path", fast_adapter=True),
    Setting("generic", "the changes that apply to every method alike (full_ft's fastest eager)",
            **GENERIC),
    Setting("fast", "generic + adapter fast path + frozen weights in bf16", **FAST),
    Setting("fast_lowmem", "fast + frozen MLPs recomputed in the backward", **FAST,
            recompute_frozen_mlps=True),
    Setting("compiled", "plain + torch.compile of the whole model", compile=True),
    Setting("fast_compiled", "fast + torch.compile of the whole model", **FAST, compile=True),
)}


@dataclass(frozen=True)
class BenchSpec:
    """The measured setting (DESIGN.md §9): backbone architecture, clip shape, batch, timing."""

    backbone: str = "clip_vit_b16"
    num_classes: int = 400
    num_frames: int = 8
    input_size: int = 224
    batch_size: int = 32
    warmup_steps: int = 5
    timed_steps: int = 20
    eval_steps: int = 10
    autocast: str = "bf16"
    lr: float = 1e-4
    device: str = "cuda"


@dataclass
class Measurement:
    """What one (setting, method) measured; ratios are filled in against full_ft afterwards."""

    label: str
    method: str
    options: dict[str, Any]
    setting: str
    params_trainable: int
    step_ms: float
    step_ms_p10: float
    step_ms_p90: float
    clips_per_s: float
    peak_memory_bytes: int
    static_memory_bytes: int
    eval_ms: float
    eval_clips_per_s: float
    first_step_s: float
    step_ratio_to_full_ft: float | None = None
    memory_ratio_to_full_ft: float | None = None

    @property
    def peak_gib(self) -> float:
        return self.peak_memory_bytes / 2**30


# -- Building ---------------------------------------------------------------------------------------

def randomise_zero_parameters(model: nn.Module, generator: torch.Generator, std: float = 0.02) -> int:
    """Give every all-zero trainable tensor (zero-initialised adapter parts, embeddings) random values."""
    count = 0
    with torch.no_grad():
        for _, param in model.trainable_named_parameters():
            if not param.any():
                noise = torch.randn(param.shape, generator=generator) * std
                param.copy_(noise.to(param.device, param.dtype))
                count += 1
    return count


def prepare_model(case: Case, setting: Setting, spec: BenchSpec) -> nn.Module:
    """The method's model on the device, with the setting's changes applied."""
    device = torch.device(spec.device)
    torch.manual_seed(0)
    with device:
        model = build_model(case.method, spec.backbone, spec.num_classes, spec.num_frames,
                            random_init=True, method_options=dict(case.options))
    randomise_zero_parameters(model, torch.Generator().manual_seed(1))
    if setting.fused_activations:
        fuse_activations(model)
    if setting.packed_attention:
        pack_attention_grads(model)
    if setting.matmul_patch_embed:
        patch_embed_as_matmul(model)
    if setting.frozen_dtype is not None:
        hold_frozen_in(model, DTYPES[setting.frozen_dtype])
    if setting.recompute_frozen_mlps:
        recompute_frozen_mlps(model)
    return model


def compiled(model: nn.Module) -> nn.Module:
    """``torch.compile(model)`` from a clean compiler cache: every model of a run shares
    ``VideoClassifier.forward``'s code object, so without a reset the recompiles for the later
    models hit dynamo's recompile limit and those models silently run eagerly."""
    torch._dynamo.reset()
    return torch.compile(model)


def make_optimizer(model: nn.Module, lr: float, device: torch.device) -> torch.optim.AdamW:
    """AdamW over the trainable set, fused on CUDA; no weight decay on biases (the recipe's rule)."""
    named = model.trainable_named_parameters()
    groups = [{"params": [p for n, p in named if not n.endswith("bias")], "weight_decay": 0.01},
              {"params": [p for n, p in named if n.endswith("bias")], "weight_decay": 0.0}]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=lr,
                             fused=device.type == "cuda")


# -- Timing -----------------------------------------------------------------------------------------

class StepTimer:
    """Times a callable with CUDA events (or the host clock on CPU); returns milliseconds."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"

    def __call__(self, fn: Callable[[], Any]) -> float:
        if self.cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            return start.elapsed_time(end)
        begin = time.perf_counter()
        fn()
        return (time.perf_counter() - begin) * 1e3


def _batches(spec: BenchSpec, device: torch.device,
             count: int = 2) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Random normalised clips and labels; two batches, alternated (never zeros)."""
    g = torch.Generator(device=device).manual_seed(2)
    shape = (spec.batch_size, 3, spec.num_frames, spec.input_size, spec.input_size)
    return [(torch.randn(shape, generator=g, device=device),
             torch.randint(0, spec.num_classes, (spec.batch_size,), generator=g, device=device))
            for _ in range(count)]


def _autocast(device: torch.device, spec: BenchSpec):
    return torch.autocast(device.type, dtype=DTYPES[spec.autocast])


def train_step_fn(model: nn.Module, optimizer: torch.optim.Optimizer, spec: BenchSpec,
                  device: torch.device) -> Callable[[tuple[torch.Tensor, torch.Tensor]], None]:
    def step(batch: tuple[torch.Tensor, torch.Tensor]) -> None:
        video, labels = batch
        optimizer.zero_grad(set_to_none=True)
        with _autocast(device, spec):
            logits = model(video)
        F.cross_entropy(logits.float(), labels).backward()
        optimizer.step()
    return step


def _percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def measure(case: Case, setting: Setting, spec: BenchSpec) -> Measurement:
    """Build, warm up, time ``spec.timed_steps`` training steps and ``spec.eval_steps`` eval passes."""
    device = torch.device(spec.device)
    model = prepare_model(case, setting, spec)
    trainable = sum(p.numel() for _, p in model.trainable_named_parameters())
    optimizer = make_optimizer(model, spec.lr, device)
    runner = compiled(model) if setting.compile else model
    batches = _batches(spec, device)
    step = train_step_fn(runner, optimizer, spec, device)
    timer = StepTimer(device)
    with fast_paths(adapter=setting.fast_adapter):
        model.train()
        first = timer(lambda: step(batches[0])) / 1e3  # compilation / autotuning / allocator growth
        for i in range(1, spec.warmup_steps):
            step(batches[i % 2])
        _sync(device)
        static = _allocated(device)
        _reset_peak(device)
        times = [timer(lambda i=i: step(batches[i % 2])) for i in range(spec.timed_steps)]
        peak = _peak(device)
        eval_ms = _time_eval(runner, batches, spec, device, timer)
    del model, runner, optimizer, batches
    _release(device)
    median = statistics.median(times)
    return Measurement(
        label=case.label, method=case.method, options=dict(case.options), setting=setting.name,
        params_trainable=trainable, step_ms=median, step_ms_p10=_percentile(times, 0.1),
        step_ms_p90=_percentile(times, 0.9), clips_per_s=spec.batch_size / median * 1e3,
        peak_memory_bytes=peak, static_memory_bytes=static, eval_ms=eval_ms,
        eval_clips_per_s=spec.batch_size / eval_ms * 1e3, first_step_s=first)


@torch.no_grad()
def _time_eval(model: nn.Module, batches, spec: BenchSpec, device: torch.device, timer: StepTimer) -> float:
    model.eval()
    with _autocast(device, spec):
        for i in range(3):
            model(batches[i % 2][0])
        times = [timer(lambda i=i: model(batches[i % 2][0])) for i in range(spec.eval_steps)]
    model.train()
    return statistics.median(times)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _allocated(device: torch.device) -> int:
    return int(torch.cuda.memory_allocated(device)) if device.type == "cuda" else 0


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def _peak(device: torch.device) -> int:
    return int(torch.cuda.max_memory_allocated(device)) if device.type == "cuda" else 0


def _release(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()


def add_ratios(results: list[Measurement]) -> None:
    """Each method's step time and peak memory over full_ft's, within the same setting."""
    base = {m.setting: m for m in results if m.label == BASELINE}
    for m in results:
        if m.setting in base:
            m.step_ratio_to_full_ft = m.step_ms / base[m.setting].step_ms
            if base[m.setting].peak_memory_bytes:  # zero on CPU, where no peak is measured
                m.memory_ratio_to_full_ft = m.peak_memory_bytes / base[m.setting].peak_memory_bytes


# -- Profiling --------------------------------------------------------------------------------------

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
    from torch.profiler import ProfilerActivity, profile as torch_profile
    device = torch.device(spec.device)
    model = prepare_model(case, setting, spec)
    optimizer = make_optimizer(model, spec.lr, device)
    runner = compiled(model) if setting.compile else model
    batches = _batches(spec, device)
    step = train_step_fn(runner, optimizer, spec, device)
    with fast_paths(adapter=setting.fast_adapter):
        for i in range(spec.warmup_steps):
            step(batches[i % 2])
        _sync(device)
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
        with torch_profile(activities=activities) as prof:
            for i in range(steps):
                step(batches[i % 2])
            _sync(device)
    del model, runner, optimizer, batches
    _release(device)
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


# -- Kernel micro-benchmarks -------------------------------------------------------------------------

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
            with fast_paths(adapter=on), _autocast(device, spec):
                times[mode] = _median_ms(fwd_bwd(adapter, x, spec.num_frames), timer)
        results.append({"piece": f"ST-Adapter 768-384-768 [B*T,197,768] stream {str(dtype)[6:]}", **times})
    return results


# -- Linear probe from cached features vs end to end --------------------------------------------------

class RandomClips(torch.utils.data.Dataset):
    """In-memory random clips (a pool reused round-robin), so the comparison times no decoding."""

    def __init__(self, length: int, spec: BenchSpec, views: int | None, pool: int = 16):
        g = torch.Generator().manual_seed(4)
        shape = (3, spec.num_frames, spec.input_size, spec.input_size)
        self.clips = torch.randn(pool, *((views,) if views else ()), *shape, generator=g)
        self.length, self.num_classes = length, spec.num_classes

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"video": self.clips[i % len(self.clips)], "label": i % self.num_classes, "index": i}


def compare_feature_cache(spec: BenchSpec, epochs: int = 12, train_clips: int = 512, val_videos: int = 64,
                          views: int = 3) -> dict[str, Any]:
    """Wall time of the linear probe end to end (every epoch through the frozen backbone) against
    ``bench.features.cached_linear_probe`` (features once per view, head on the cache), same epochs,
    same optimiser and schedule; data are in-memory random clips, so decoding is excluded from both."""
    from bench.features import cached_linear_probe
    from bench.engine import WarmupCosine, epoch_order

    device = torch.device(spec.device)
    amp = DTYPES[spec.autocast]
    case, setting = Case("linear_probe", "linear_probe"), SETTINGS["fast"]
    train_set, val_set = RandomClips(train_clips, spec, None), RandomClips(val_videos, spec, views)
    steps_per_epoch = train_clips // spec.batch_size

    model = prepare_model(case, setting, spec)
    optimizer = make_optimizer(model, spec.lr, device)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, WarmupCosine(2 * steps_per_epoch,
                                                                          epochs * steps_per_epoch))
    step = train_step_fn(model, optimizer, spec, device)
    _sync(device)
    start = time.perf_counter()
    for epoch in range(epochs):
        order = epoch_order(train_clips, 0, epoch).tolist()
        batches = [order[i * spec.batch_size:(i + 1) * spec.batch_size] for i in range(steps_per_epoch)]
        loader = torch.utils.data.DataLoader(train_set, batch_sampler=batches,
                                             pin_memory=device.type == "cuda")
        for batch in loader:
            step((batch["video"].to(device, non_blocking=True), batch["label"].to(device)))
            scheduler.step()
    loader = torch.utils.data.DataLoader(val_set, batch_size=max(1, spec.batch_size // views))
    with torch.no_grad(), _autocast(device, spec):
        model.eval()
        for batch in loader:
            model(batch["video"].flatten(0, 1).to(device))
    _sync(device)
    end_to_end = time.perf_counter() - start
    del model, optimizer
    _release(device)

    model = prepare_model(case, setting, spec)
    cached = cached_linear_probe(model, train_set, val_set, epochs=epochs, batch_size=spec.batch_size,
                                 lr=spec.lr, weight_decay=0.01, betas=(0.9, 0.999), warmup_epochs=2,
                                 seed=0, device=device, amp_dtype=amp)
    del model
    _release(device)
    return {"kind": "perf_feature_cache", "epochs": epochs, "train_clips": train_clips,
            "val_videos": val_videos, "views": views, "end_to_end_s": end_to_end,
            "cached_s": cached.timings_s["total"], "cached_timings_s": cached.timings_s,
            "speedup": end_to_end / cached.timings_s["total"], "augmentation": cached.augmentation,
            "data": "in-memory random clips (decoding excluded from both)", "spec": dataclasses.asdict(spec)}


# -- Records and table ------------------------------------------------------------------------------

def environment(spec: BenchSpec) -> dict[str, Any]:
    device = torch.device(spec.device)
    info: dict[str, Any] = {"torch": torch.__version__, "cuda": torch.version.cuda,
                            "hardware": provenance.hardware(device)}
    try:
        import triton
        info["triton"] = triton.__version__
    except ImportError:
        info["triton"] = None
    commit, dirty = provenance.git_state()
    info.update(git_commit=commit, git_dirty=dirty)
    return info


def write_json(path: Path, data: dict[str, Any]) -> Path:
    """Atomic write: temp file in the same folder, then rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(data, indent=2, sort_keys=True) + "\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def record(m: Measurement, setting: Setting, spec: BenchSpec, env: dict[str, Any]) -> dict[str, Any]:
    return {"kind": "perf", **dataclasses.asdict(m), "peak_memory_gib": round(m.peak_gib, 3),
            "setting_detail": setting.to_dict(), "spec": dataclasses.asdict(spec),
            "gpu": env["hardware"].get("gpu", "none"), "environment": env,
            "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}


def format_table(results: list[Measurement]) -> str:
    header = ("| setting | method | trainable | step ms (p10-p90) | clips/s | peak GiB | eval clips/s "
              "| step / full_ft | memory / full_ft |")
    lines = [header, "|" + "---|" * 9]
    for m in results:
        ratio = lambda r: "—" if r is None else f"{r:.2f}"  # noqa: E731
        lines.append(f"| {m.setting} | {m.label} | {m.params_trainable:,} | {m.step_ms:.1f} "
                     f"({m.step_ms_p10:.1f}-{m.step_ms_p90:.1f}) | {m.clips_per_s:.0f} | {m.peak_gib:.2f} "
                     f"| {m.eval_clips_per_s:.0f} | {ratio(m.step_ratio_to_full_ft)} "
                     f"| {ratio(m.memory_ratio_to_full_ft)} |")
    return "\n".join(lines) + "\n"


def load_measurements(folder: Path) -> list[Measurement]:
    """The perf records under ``folder``, in setting then method order (for tables)."""
    names = {f.name for f in dataclasses.fields(Measurement)}
    found = []
    for path in sorted(Path(folder).glob("*.json")):
        data = json.loads(path.read_text())
        if data.get("kind") == "perf":
            found.append(Measurement(**{k: v for k, v in data.items() if k in names}))
    settings, labels = list(SETTINGS), [c.label for c in CASES]
    return sorted(found, key=lambda m: (settings.index(m.setting) if m.setting in settings else len(settings),
                                        labels.index(m.label) if m.label in labels else len(labels)))


# -- Command line -----------------------------------------------------------------------------------

def _pick(names: str, known: dict[str, Any], what: str) -> list[Any]:
    if names == "all":
        return list(known.values())
    chosen = []
    for name in (n.strip() for n in names.split(",") if n.strip()):
        if name not in known:
            raise PerfError(f"unknown {what} {name!r}; choose from {sorted(known)} or 'all'")
        chosen.append(known[name])
    return chosen


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.perf", description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", default="all", help="method labels, comma-separated "
                        f"({', '.join(c.label for c in CASES)}) or 'all'")
    parser.add_argument("--settings", default=None, help="settings, comma-separated "
                        f"({', '.join(SETTINGS)}) or 'all' (default: {','.join(DEFAULT_SETTINGS)}; "
                        "with --from-records: all)")
    parser.add_argument("--steps", type=int, default=BenchSpec.timed_steps, help="timed steps (>= 20)")
    parser.add_argument("--warmup", type=int, default=BenchSpec.warmup_steps)
    parser.add_argument("--batch-size", type=int, default=BenchSpec.batch_size)
    parser.add_argument("--backbone", default=BenchSpec.backbone)
    parser.add_argument("--input-size", type=int, default=BenchSpec.input_size)
    parser.add_argument("--device", default=BenchSpec.device)
    parser.add_argument("--out", type=Path, default=PERF_DIR, help="where the JSON records go")
    parser.add_argument("--no-records", action="store_true", help="print the table only")
    parser.add_argument("--from-records", type=Path, default=None, metavar="DIR",
                        help="measure nothing: print the table of the perf records in DIR")
    parser.add_argument("--profile", default="", help="method labels to profile (per setting)")
    parser.add_argument("--profile-dir", type=Path, default=None, help="where profile tables go")
    parser.add_argument("--micro", action="store_true", help="also time each fast-path piece alone")
    parser.add_argument("--features", action="store_true",
                        help="also compare the cached-feature linear probe with the end-to-end one")
    args = parser.parse_args(argv)
    if args.from_records is not None:
        return args
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("--device cuda: CUDA is not available here; use a GPU machine (or --device cpu "
                     "with --backbone vit_tiny_test for a smoke run)")
    if args.steps < 1 or args.warmup < 1:
        parser.error("--steps and --warmup must be >= 1")
    return args


def _print_table_from_records(folder: Path, settings: list[Setting] | None) -> int:
    results = load_measurements(folder)
    if settings is not None:
        results = [m for m in results if m.setting in {s.name for s in settings}]
    if not results:
        print(f"error: no perf records in {folder}", file=sys.stderr)
        return 2
    print(format_table(results))
    return 0


def _measure_all(cases: list[Case], settings: list[Setting], profiled: list[Case], spec: BenchSpec,
                 env: dict[str, Any], out: Path | None, profile_dir: Path | None) -> list[Measurement]:
    """Every (setting, method), full_ft first in each setting; records are written as measured, so a
    later failure loses nothing."""
    cases = sorted(cases, key=lambda c: c.label != BASELINE)
    results: list[Measurement] = []
    for setting in settings:
        for case in cases:
            m = measure(case, setting, spec)
            results.append(m)
            add_ratios(results)
            if out is not None:
                write_json(out / f"{spec.backbone}__{m.setting}__{m.label}.json",
                           record(m, setting, spec, env))
            print(f"{setting.name:>14} {case.label:<22} {m.step_ms:7.1f} ms  {m.peak_gib:6.2f} GiB  "
                  f"eval {m.eval_clips_per_s:6.0f} clips/s  (first step {m.first_step_s:.1f} s)", flush=True)
        for case in profiled:
            result = profile(case, setting, spec)
            text = format_profile(result)
            print(text, flush=True)
            if profile_dir is not None:
                profile_dir.mkdir(parents=True, exist_ok=True)
                stem = f"profile__{setting.name}__{case.label}"
                (profile_dir / f"{stem}.md").write_text(text + "\n```\n" + result["table"] + "\n```\n")
                write_json(profile_dir / f"{stem}.json", {k: v for k, v in result.items() if k != "table"})
    return results


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        settings = None if args.settings is None else _pick(args.settings, SETTINGS, "setting")
        if args.from_records is not None:
            return _print_table_from_records(args.from_records, settings)
        settings = settings or [SETTINGS[name] for name in DEFAULT_SETTINGS]
        cases = _pick(args.methods, {c.label: c for c in CASES}, "method label")
        profiled = _pick(args.profile, {c.label: c for c in CASES}, "method label") if args.profile else []
    except PerfError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    spec = BenchSpec(backbone=args.backbone, input_size=args.input_size, batch_size=args.batch_size,
                     warmup_steps=args.warmup, timed_steps=args.steps, device=args.device)
    env = environment(spec)
    out = None if args.no_records else args.out
    print(f"# {env['hardware'].get('gpu', args.device)}, torch {env['torch']}, triton {env['triton']}; "
          f"{spec.backbone}, {spec.batch_size} clips x {spec.num_frames} frames at {spec.input_size}, "
          f"{spec.autocast} autocast, {spec.timed_steps} timed steps", flush=True)
    results = _measure_all(cases, settings, profiled, spec, env, out, args.profile_dir)
    provenance_fields = {"spec": dataclasses.asdict(spec), "gpu": env["hardware"].get("gpu", "none"),
                         "environment": env}
    if args.micro:
        rows = micro_benchmarks(spec)
        for row in rows:
            print(f"micro {row['piece']:<52} reference {row['reference']:7.3f} ms  "
                  f"fast {row['fast']:7.3f} ms")
        if out is not None:
            write_json(out / f"{spec.backbone}__micro.json",
                       {"kind": "perf_micro", "rows": rows, **provenance_fields})
    if args.features:
        comparison = compare_feature_cache(spec)
        print(f"linear probe, {comparison['epochs']} epochs: end to end {comparison['end_to_end_s']:.1f} s, "
              f"cached features {comparison['cached_s']:.1f} s ({comparison['speedup']:.1f}x)", flush=True)
        if out is not None:
            write_json(out / f"{spec.backbone}__linear_probe_feature_cache.json",
                       {**comparison, **provenance_fields})
    print(format_table(results), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
