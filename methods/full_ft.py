"""Full fine-tuning: every backbone weight and the head are trained (fp32 master weights: the
run engine keeps trainable weights in fp32 under autocast, so nothing here is stored in half).

Learning rate: full fine-tuning moves all the weights; at the adapters' lr 1e-3 it destroys the
CLIP features. 3e-5 per 256 clips is the usual range for fine-tuning CLIP towers end to end; it was
not swept on K400/SSv2 here (no data on the development machines): sweep with ``--lr`` and
``--methods full_ft``. On the synthetic tasks it trains the pre-trained originals and gets 0.01
(the adapters' 0.1 diverges; see temporal_attention for the sweep).
"""
from __future__ import annotations

from dataclasses import dataclass

from .base import MethodConfig, VideoClassifier
from .registry import register_method

FULL_FT_BASE_LR = 3e-5


@dataclass(frozen=True)
class FullFtConfig(MethodConfig):
    """No options: the whole encoder and the head are trainable."""


@register_method("full_ft", FullFtConfig,
                 base_lr={"k400": FULL_FT_BASE_LR, "ssv2": FULL_FT_BASE_LR, "synth": 0.01})
def attach(model: VideoClassifier, cfg: FullFtConfig) -> list:
    return [model.encoder, model.head]
