"""Linear probe: the frozen image model with only the shared head trained."""
from __future__ import annotations

from dataclasses import dataclass

from .base import MethodConfig, MethodSpec, VideoClassifier


@dataclass(frozen=True)
class LinearProbeConfig(MethodConfig):
    """No options: the head is the whole trainable set."""

    method = "linear_probe"


def attach(model: VideoClassifier, cfg: LinearProbeConfig) -> list:
    return [model.head]


METHOD = MethodSpec(name="linear_probe", config_cls=LinearProbeConfig, attach=attach)
