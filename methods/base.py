"""What every method shares: the video classifier (encoder + temporal pooling + head), the method
spec the registry holds, the errors for bad input and the helpers that validate method options."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Iterable, Literal, Mapping, Sequence

import torch
from torch import nn

from .backbone import BackboneConfig, FrameEncoder

SLOT_POSITIONS = ("pre_attn", "pre_mlp")
FINAL_NORMS = ("pooled", "per_frame")


class UnknownMethodError(ValueError):
    """A method name that is not registered."""


class MethodConfigError(ValueError):
    """An invalid method option or preset."""


class MethodRegistryError(ValueError):
    """A method that cannot be registered: a name collision, a bad declaration, a bad method file."""


class WeightsError(ValueError):
    """Pre-trained weights that are missing, unreadable or do not fit the model."""


@dataclass(frozen=True)
class MethodConfig:
    """Base of the per-method option dataclasses; subclasses validate in ``__post_init__``.

    Two properties declare how the configured method behaves, and the generic tests hold every
    method to its declaration: ``frames_interact`` (frames exchange information, so the logits
    depend on frame order; otherwise they are exactly invariant to it) and ``starts_as_image_model``
    (at initialisation the logits equal the linear probe's with the same head).
    """

    method: ClassVar[str] = ""

    @property
    def frames_interact(self) -> bool:
        return False

    @property
    def starts_as_image_model(self) -> bool:
        return True

    def check_backbone(self, backbone: BackboneConfig) -> None:
        """Validate options that depend on the backbone (e.g. a layer count); default: none."""

    def fail(self, option: str, value: Any, expected: str) -> MethodConfigError:
        return MethodConfigError(f"{self.method}: option {option}={value!r} is invalid: {expected}")

    def require_int(self, option: str, minimum: int) -> None:
        value = getattr(self, option)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise self.fail(option, value, f"expected an int >= {minimum}")

    def require_number(self, option: str, minimum: float, inclusive: bool = True) -> None:
        value = getattr(self, option)
        ok = (not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
              and (value >= minimum if inclusive else value > minimum))
        if not ok:
            raise self.fail(option, value, f"expected a number {'>=' if inclusive else '>'} {minimum}")

    def require_choice(self, option: str, choices: Sequence[Any]) -> None:
        value = getattr(self, option)
        if value not in choices:
            raise self.fail(option, value, f"expected one of {list(choices)}")

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
    """A registered method: its option dataclass, presets, recipe rules and the function that attaches it.

    ``attach(model, config)`` inserts the method's modules into the encoder's sites (after the
    backbone weights are in place, so modules may be initialised from them) and returns the
    modules / parameters to train: the method's whole trainable set, head included.

    Recipe rules, keyed by recipe family (the run suite's recipes name theirs, e.g. "k400", "ssv2",
    "synth"): ``base_lr`` is the method's base learning rate per 256 clips where it differs from
    the recipe's, ``recipe_options`` the options (e.g. ``{"preset": "12x384"}``) the method runs
    with under recipes of that family unless the user overrides them.

    ``tunable`` names the numeric options ``bench.run --tune OPTION`` may search, each with the
    ratio between neighbouring points of its log-spaced grid (e.g. ``{"width": 2.0}``); the grid is
    centred on the value the method runs with.

    ``merge(model)``, for a method whose modules fold into the frozen weights after training (LoRA,
    ZeroI2V), turns a trained model into its deployed form in place. The report counts that form's
    FLOPs as the method's inference cost; without a merge the deployed model is the trained one.
    """

    name: str
    config_cls: type[MethodConfig]
    attach: Callable[["VideoClassifier", Any], Iterable[Trainable]]
    presets: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    base_lr: Mapping[str, float] = field(default_factory=dict)
    recipe_options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    tunable: Mapping[str, float] = field(default_factory=dict)
    merge: Callable[["VideoClassifier"], "VideoClassifier"] | None = None
    source: str = ""  # the module or file that registered it, for messages
    version: int = 1  # part of every run's identity: bump it when the method computes something else

    def base_lr_for(self, family: str, recipe_base_lr: float) -> float:
        return self.base_lr.get(family, recipe_base_lr)

    def options_for(self, family: str) -> dict[str, Any]:
        return dict(self.recipe_options.get(family, {}))


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
    """Frame encoder -> per-frame CLS (before the final LN) -> mean over time -> final LN -> head.

    ``final_norm`` "pooled" (the shared head, every method's default) applies the final LayerNorm
    to the time-averaged CLS; "per_frame" applies it to each frame's CLS before averaging (AIM's
    own head). The two differ because LayerNorm is not linear.

    ``readout``, when a method sets one, replaces that pooling: a module called as
    ``readout(encoder, frames, num_frames) -> [B, width]`` that runs the encoder itself, for methods
    whose head reads something else than the frames' CLS tokens (EVL's decoder over the frozen
    encoder's intermediate features). Its parameters live under ``readout.*``.
    """

    def __init__(self, encoder: FrameEncoder, num_classes: int, num_frames: int, method: str,
                 method_config: MethodConfig) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = VideoHead(encoder.width, num_classes)
        self.method = method
        self.method_config = method_config
        self.num_classes = num_classes
        self.num_frames = num_frames
        self.final_norm: Literal["pooled", "per_frame"] = "pooled"
        self.readout: nn.Module | None = None
        self._trainable_names: tuple[str, ...] = ()

    def features(self, video: torch.Tensor) -> torch.Tensor:
        """video [B, 3, T, H, W] -> the head's input [B, width]."""
        batch, _, num_frames = video.shape[:3]
        frames = video.transpose(1, 2).flatten(0, 1)
        if self.readout is not None:
            return self.readout(self.encoder, frames, num_frames)
        cls = self.encoder(frames, num_frames).view(batch, num_frames, -1)
        if self.final_norm == "per_frame":
            return self.encoder.norm(cls).mean(dim=1)
        return self.encoder.norm(cls.mean(dim=1))

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        """video [B, 3, T, H, W] -> logits [B, num_classes]."""
        return self.head(self.features(video))

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
                chosen.discard(id(param))
        if chosen:
            raise MethodRegistryError(f"method {self.method!r} declared {len(chosen)} trainable "
                                      "parameter(s) that are not part of the model: insert its "
                                      "modules into the encoder (FrameEncoder.set_slot / wrap_branch / "
                                      "add_parallel / wrap_projection) or set model.readout before returning them")
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
