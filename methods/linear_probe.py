"""Linear probe: the frozen image model with only the shared head trained."""
from __future__ import annotations

from dataclasses import dataclass

from .base import MethodConfig, VideoClassifier
from .registry import register_method


@dataclass(frozen=True)
class LinearProbeConfig(MethodConfig):
    """No options: the head is the whole trainable set."""


@register_method("linear_probe", LinearProbeConfig)
def attach(model: VideoClassifier, cfg: LinearProbeConfig) -> list:
    return [model.head]
