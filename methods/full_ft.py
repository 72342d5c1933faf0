"""Full fine-tuning: every backbone weight and the head are trained (fp32 master weights: the
run engine keeps trainable weights in fp32 under autocast, so nothing here is stored in half)."""
from __future__ import annotations

from dataclasses import dataclass

from .base import MethodConfig, MethodSpec, VideoClassifier


@dataclass(frozen=True)
class FullFtConfig(MethodConfig):
    """No options: the whole encoder and the head are trainable."""

    method = "full_ft"


def attach(model: VideoClassifier, cfg: FullFtConfig) -> list:
    return [model.encoder, model.head]


METHOD = MethodSpec(name="full_ft", config_cls=FullFtConfig, attach=attach)
