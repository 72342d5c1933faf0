"""What the GPU benchmark measures: method cases, settings (sets of speed changes), the spec, a measurement."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

PERF_DIR = Path("results/perf")


DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


BASELINE = "full_ft"


class PerfError(ValueError):
    """A bad command-line choice (unknown method label or setting, impossible device)."""


@dataclass(frozen=True)
class Case:
    """One method configuration to measure."""

    label: str
    method: str
    options: dict[str, Any] = field(default_factory=dict)


PAPER_FAMILIES = ("k400", "ssv2")  # the recipes whose setting the benchmark measures (DESIGN.md §9)


def cases() -> tuple[Case, ...]:
    """Every registered method as the K400 and SSv2 recipes run it: one case per distinct option set
    it declares for them (a method declaring none: one case, its defaults), labelled ``method`` or
    ``method_<preset>``; the baseline first, then by label."""
    from methods import get_method, list_methods
    found = []
    for method in list_methods():
        spec = get_method(method)
        option_sets = {json.dumps(spec.options_for(f), sort_keys=True): f for f in PAPER_FAMILIES}
        for encoded, family in option_sets.items():
            options = json.loads(encoded)
            label = method
            if "preset" in options:
                label = f"{method}_{options['preset']}"
            elif len(option_sets) > 1:
                label = f"{method}_{family}"
            found.append(Case(label, method, options))
    return tuple(sorted(found, key=lambda c: (c.label != BASELINE, c.label)))


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
