"""ST-Adapter (Pan et al., NeurIPS 2022): fc1 -> depthwise temporal conv -> fc2 on the patch tokens,
no activation, identity at initialisation (DESIGN.md section 2).

The paper's kernel-size ablation is preset ``12x384_k1``: the same adapters with a (1,1,1) kernel,
still without activation and with the zero-initialised conv, so frames never interact (a per-frame
linear bottleneck). It is not the plain ``adapter`` method, which has a GELU and a zero-initialised
fc2.

Recipe options: the K400 reference model is ``12x384`` (pre-MLP in every block), the SSv2 one
``24x384`` (pre-attention and pre-MLP). On the synthetic tasks (a 64-wide, 4-block ViT) the adapters
are width C/2 = 32 at both positions of every block (the SSv2 placement); they need the recipe's
high lr (0.1 per 256 clips) to learn the motion pairs in 16 epochs (sweep on an earlier backbone,
one seed: lr 0.1 -> 63% top-1, 0.05 -> 59%, 0.03 -> 37%).
"""
from __future__ import annotations

from dataclasses import dataclass

from .base import VideoClassifier
from .bottleneck import AdapterPlacement, insert_adapters
from .registry import register_method

PRESETS = {
    "12x384": {"width": 384, "positions": ("pre_mlp",), "num_layers": None},  # K400 model
    "24x384": {"width": 384, "positions": ("pre_attn", "pre_mlp"), "num_layers": None},  # SSv2
    "12x384_k1": {"width": 384, "positions": ("pre_mlp",), "num_layers": None, "kernel_size": 1},
}


@dataclass(frozen=True)
class StAdapterConfig(AdapterPlacement):
    """Width, temporal kernel (odd, default 3), slots and last-N blocks of the ST-Adapters."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.kernel_size is None:
            raise self.fail("kernel_size", None, "ST-Adapter needs its temporal conv; for an "
                                                 "adapter without one use method 'adapter'")

    @property
    def frames_interact(self) -> bool:
        return self.kernel_size > 1


# The bottleneck width is the capacity knob the paper ablates: `bench.run --tune width` searches it
# in factors of 2 around the recipe's width.
@register_method("st_adapter", StAdapterConfig, presets=PRESETS, recipe_options={
    "k400": {"preset": "12x384"}, "ssv2": {"preset": "24x384"},
    "synth": {"width": 32, "positions": "pre_attn,pre_mlp"}}, tunable={"width": 2.0})
def attach(model: VideoClassifier, cfg: StAdapterConfig) -> list:
    adapters = insert_adapters(model, cfg, activation=False, zero_init="conv")
    return [*adapters, model.head]
