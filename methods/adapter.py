"""Plain bottleneck adapter: fc1 -> GELU -> fc2 with a zero-initialised up-projection, placed like
ST-Adapter (patch tokens, same slots and width) but with no temporal conv, so frames never interact.
``kernel_size=1`` adds a per-channel (1,1,1) conv (DESIGN.md section 3's "plain adapter, kernel
(1,1,1)" row); ST-Adapter's own kernel-size ablation is st_adapter's ``12x384_k1`` preset.

On K400 and SSv2 it runs as ``12x384`` (the default); on the synthetic tasks it is placed as
st_adapter is there (width 32, both positions)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from .base import VideoClassifier
from .bottleneck import AdapterPlacement, insert_adapters
from .registry import register_method


@dataclass(frozen=True)
class AdapterConfig(AdapterPlacement):
    """Width, slots, last-N blocks; ``kernel_size`` None (no conv, default) or 1."""

    kernel_size: int | Sequence[int] | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.kernel_size not in (None, 1):
            raise self.fail("kernel_size", self.kernel_size, "a plain adapter is per-frame: use None "
                                                             "or 1 (temporal kernels: st_adapter)")


@register_method("adapter", AdapterConfig, presets={
    "12x384": {"width": 384, "positions": ("pre_mlp",), "num_layers": None, "kernel_size": None},
    "24x384": {"width": 384, "positions": ("pre_attn", "pre_mlp"), "num_layers": None,
               "kernel_size": None},
    "12x384_k1": {"width": 384, "positions": ("pre_mlp",), "num_layers": None, "kernel_size": 1},
}, recipe_options={"k400": {"preset": "12x384"}, "ssv2": {"preset": "12x384"},
                   "synth": {"width": 32, "positions": "pre_attn,pre_mlp"}},
                 tunable={"width": 2.0})  # as st_adapter's, so the two are tuned alike
def attach(model: VideoClassifier, cfg: AdapterConfig) -> list:
    adapters = insert_adapters(model, cfg, activation=True, zero_init="fc2")
    return [*adapters, model.head]
