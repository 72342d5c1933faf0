"""What every method shares: the video classifier (encoder + temporal pooling + head), the method
spec the registry holds, the errors for bad input and the helpers that validate method options."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Iterable, Mapping, Sequence

import torch
from torch import nn

from .backbone import BackboneConfig, FrameEncoder

SLOT_POSITIONS = ("pre_attn", "pre_mlp")


class UnknownMethodError(ValueError):
    """A method name that is not registered."""


class MethodConfigError(ValueError):
    """An invalid method option or preset."""


class WeightsError(ValueError):
    """Pre-trained weights that are missing, unreadable or do not fit the model."""


@dataclass(frozen=True)
class MethodConfig:
    """Base of the per-method option dataclasses; subclasses validate in ``__post_init__``."""

    method: ClassVar[str] = ""

    def check_backbone(self, backbone: BackboneConfig) -> None:
        """Validate options that depend on the backbone (e.g. a layer count); default: none."""

    def fail(self, option: str, value: Any, expected: str) -> MethodConfigError:
        return MethodConfigError(f"{self.method}: option {option}={value!r} is invalid: {expected}")

    def require_int(self, option: str, minimum: int) -> None:
        value = getattr(self, option)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise self.fail(option, value, f"expected an int >= {minimum}")

    def require_layers(self, backbone: BackboneConfig, option: str = "num_layers") -> None:
        value = getattr(self, option)
        if value is not None and value > backbone.depth:
            raise self.fail(option, value, f"backbone {backbone.name!r} has only {backbone.depth} "
                                           f"blocks; use at most {backbone.depth} (or None for all)")

    def normalised_positions(self, positions: str | Sequence[str]) -> tuple[str, ...]:
        """Accept "pre_mlp", "pre_attn,pre_mlp" or a sequence; return them in block order."""
        items = positions.split(",") if isinstance(positions, str) else list(positions)
        items = [p.strip() for p in items]
        if not items or any(p not in SLOT_POSITIONS for p in items) or len(set(items)) != len(items):
            raise self.fail("positions", positions,
                            f"expected a non-empty set of distinct positions from {SLOT_POSITIONS}")
        return tuple(p for p in SLOT_POSITIONS if p in items)


def last_blocks(depth: int, num_layers: int | None) -> range:
    """Indices of the last ``num_layers`` blocks (all blocks when None), as the reference does."""
    return range(depth - (depth if num_layers is None else num_layers), depth)


Trainable = nn.Module | nn.Parameter


@dataclass(frozen=True)
class MethodSpec:
    """A registered method: its option dataclass, presets and the function that attaches it.

    ``attach(model, config)`` inserts the method's modules into the encoder's slots (after the
    backbone weights are in place, so modules may be initialised from them) and returns the
    modules / parameters to train: the method's whole trainable set, head included.
    """

    name: str
    config_cls: type[MethodConfig]
    attach: Callable[["VideoClassifier", Any], Iterable[Trainable]]
    presets: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


class VideoHead(nn.Module):
    """Dropout(0.5) + Linear(width, classes), N(0, 0.02) weight and zero bias as in the reference."""

    def __init__(self, width: int, num_classes: int, dropout: float = 0.5) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(width, num_classes)
        nn.init.normal_(self.fc.weight, std=0.02)
        nn.init.zeros_(self.fc.bias)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(features))


class VideoClassifier(nn.Module):
    """Frame encoder -> per-frame CLS (before the final LN) -> mean over time -> final LN -> head."""

    def __init__(self, encoder: FrameEncoder, num_classes: int, num_frames: int, method: str,
                 method_config: MethodConfig) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = VideoHead(encoder.width, num_classes)
        self.method = method
        self.method_config = method_config
        self.num_classes = num_classes
        self.num_frames = num_frames
        self._trainable_names: tuple[str, ...] = ()

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        """video [B, 3, T, H, W] -> logits [B, num_classes]."""
        batch, _, num_frames = video.shape[:3]
        frames = video.transpose(1, 2).flatten(0, 1)
        cls = self.encoder(frames, num_frames)
        features = self.encoder.norm(cls.view(batch, num_frames, -1).mean(dim=1))
        return self.head(features)

    def declare_trainable(self, parts: Iterable[Trainable]) -> None:
        """Freeze everything, then unfreeze exactly ``parts`` (the method's declaration)."""
        chosen = set()
        for part in parts:
            params = [part] if isinstance(part, nn.Parameter) else list(part.parameters())
            chosen.update(id(p) for p in params)
        names = []
        for name, param in self.named_parameters():
            param.requires_grad_(id(param) in chosen)
            if id(param) in chosen:
                names.append(name)
        self._trainable_names = tuple(names)

    def trainable_named_parameters(self) -> list[tuple[str, nn.Parameter]]:
        params = dict(self.named_parameters())
        return [(name, params[name]) for name in self._trainable_names]

    def parameter_counts(self) -> tuple[int, int]:
        """(trainable, total) parameter counts."""
        trainable = sum(p.numel() for _, p in self.trainable_named_parameters())
        return trainable, sum(p.numel() for p in self.parameters())

    def added_state_keys(self) -> set[str]:
        """State-dict keys that image weights cannot provide: the method's modules and the head."""
        backbone = {f"encoder.{k}" for k in self.encoder.backbone_state_keys()}
        return set(self.state_dict()) - backbone
