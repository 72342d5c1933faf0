"""Building a case under a setting and timing its training and evaluation steps."""
from __future__ import annotations

import statistics
import time
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from bench.timing.cases import BASELINE, DTYPES, BenchSpec, Case, Measurement, Setting
from methods import build_model
from methods.fast import (
    fuse_activations,
    hold_frozen_in,
    pack_attention_grads,
    patch_embed_as_matmul,
    recompute_frozen_mlps,
    use_fast_adapters,
)


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
    if setting.fast_adapter:
        use_fast_adapters(model)
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


def random_batches(spec: BenchSpec, device: torch.device,
             count: int = 2) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Random normalised clips and labels; two batches, alternated (never zeros)."""
    g = torch.Generator(device=device).manual_seed(2)
    shape = (spec.batch_size, 3, spec.num_frames, spec.input_size, spec.input_size)
    return [(torch.randn(shape, generator=g, device=device),
             torch.randint(0, spec.num_classes, (spec.batch_size,), generator=g, device=device))
            for _ in range(count)]


def bench_autocast(device: torch.device, spec: BenchSpec):
    return torch.autocast(device.type, dtype=DTYPES[spec.autocast])


def train_step_fn(model: nn.Module, optimizer: torch.optim.Optimizer, spec: BenchSpec,
                  device: torch.device) -> Callable[[tuple[torch.Tensor, torch.Tensor]], None]:
    def step(batch: tuple[torch.Tensor, torch.Tensor]) -> None:
        video, labels = batch
        optimizer.zero_grad(set_to_none=True)
        with bench_autocast(device, spec):
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
    batches = random_batches(spec, device)
    step = train_step_fn(runner, optimizer, spec, device)
    timer = StepTimer(device)
    model.train()
    first = timer(lambda: step(batches[0])) / 1e3  # compilation / autotuning / allocator growth
    for i in range(1, spec.warmup_steps):
        step(batches[i % 2])
    synchronize(device)
    static = _allocated(device)
    _reset_peak(device)
    times = [timer(lambda i=i: step(batches[i % 2])) for i in range(spec.timed_steps)]
    peak = _peak(device)
    eval_ms = _time_eval(runner, batches, spec, device, timer)
    del model, runner, optimizer, batches
    release_memory(device)
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
    with bench_autocast(device, spec):
        for i in range(3):
            model(batches[i % 2][0])
        times = [timer(lambda i=i: model(batches[i % 2][0])) for i in range(spec.eval_steps)]
    model.train()
    return statistics.median(times)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _allocated(device: torch.device) -> int:
    return int(torch.cuda.memory_allocated(device)) if device.type == "cuda" else 0


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def _peak(device: torch.device) -> int:
    return int(torch.cuda.max_memory_allocated(device)) if device.type == "cuda" else 0


def release_memory(device: torch.device) -> None:
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
