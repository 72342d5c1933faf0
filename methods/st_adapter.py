"""ST-Adapter (Pan et al., NeurIPS 2022): fc1 -> depthwise temporal conv -> fc2 on the patch tokens,
no activation, identity at initialisation (DESIGN.md section 2)."""
from __future__ import annotations

from dataclasses import dataclass

from .base import MethodSpec, VideoClassifier
from .bottleneck import AdapterPlacement, insert_adapters


@dataclass(frozen=True)
class StAdapterConfig(AdapterPlacement):
    """Width, temporal kernel (odd, default 3), slots and last-N blocks of the ST-Adapters."""

    method = "st_adapter"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.kernel_size is None:
            raise self.fail("kernel_size", None, "ST-Adapter needs its temporal conv; for an "
                                                 "adapter without one use method 'adapter'")


def attach(model: VideoClassifier, cfg: StAdapterConfig) -> list:
    adapters = insert_adapters(model, cfg, activation=False, zero_init="conv")
    return [*adapters, model.head]


METHOD = MethodSpec(
    name="st_adapter",
    config_cls=StAdapterConfig,
    attach=attach,
    presets={
        "12x384": {"width": 384, "positions": ("pre_mlp",), "num_layers": None},  # K400 model
        "24x384": {"width": 384, "positions": ("pre_attn", "pre_mlp"), "num_layers": None},  # SSv2
    },
)
