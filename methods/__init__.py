"""PETL methods that turn a pre-trained image ViT into a video classifier, behind one interface.

``build_model("st_adapter", "clip_vit_b16", num_classes=400, num_frames=8, weights="ViT-B-16.pt",
method_options={"preset": "12x384"})`` returns a ``VideoClassifier`` whose trainable set the method
declared (``trainable_named_parameters``). Methods differ only in the modules they insert into the
frame encoder's slots and in what they unfreeze; encoder, temporal pooling and head are shared.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from . import adapter, full_ft, linear_probe, partial_ft, prompt_tuning, st_adapter, temporal_attention
from .backbone import (BackboneConfig, BackboneError, FrameEncoder, get_backbone_config, list_backbones,
                       register_backbone)
from .base import (MethodConfig, MethodConfigError, MethodSpec, UnknownMethodError, VideoClassifier,
                   VideoHead, WeightsError)
from .weights import export_st_adapter_checkpoint, load_backbone, load_extras, read_weights

__all__ = [
    "BackboneConfig", "BackboneError", "FrameEncoder", "MethodConfig", "MethodConfigError",
    "MethodSpec", "UnknownMethodError", "VideoClassifier", "VideoHead", "WeightsError",
    "build_model", "export_st_adapter_checkpoint", "get_backbone_config", "get_method",
    "list_backbones", "list_methods", "make_method_config", "register_backbone",
]

_METHODS: dict[str, MethodSpec] = {
    module.METHOD.name: module.METHOD
    for module in (adapter, full_ft, linear_probe, partial_ft, prompt_tuning, st_adapter,
                   temporal_attention)
}


def list_methods() -> list[str]:
    return sorted(_METHODS)


def get_method(method: str) -> MethodSpec:
    try:
        return _METHODS[method]
    except KeyError:
        raise UnknownMethodError(f"unknown method {method!r}; choose one of {list_methods()}") from None


def make_method_config(method: str, **options: Any) -> MethodConfig:
    """The method's typed config from a preset (``preset=...``) and/or explicit options."""
    spec = get_method(method)
    preset = options.pop("preset", None)
    values: dict[str, Any] = {}
    if preset is not None:
        if preset not in spec.presets:
            raise MethodConfigError(f"{method}: unknown preset {preset!r}; presets: "
                                    f"{sorted(spec.presets) or 'none'}")
        values.update(spec.presets[preset])
    fields = spec.config_cls.__dataclass_fields__
    unknown = sorted(set(options) - set(fields))
    if unknown:
        raise MethodConfigError(f"{method}: unknown option(s) {unknown}; options: "
                                f"{sorted(fields) or 'none'}, plus 'preset' {sorted(spec.presets)}")
    values.update(options)
    return spec.config_cls(**values)


def _positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"build_model: {name}={value!r} must be a positive int")


def build_model(method: str, backbone: str | BackboneConfig, num_classes: int, num_frames: int,
                weights: str | Path | None = None, random_init: bool = False,
                method_options: dict[str, Any] | None = None) -> VideoClassifier:
    """Build ``backbone`` (by name or config), load ``weights`` into it, attach ``method``.

    Options are validated before any weights are read. ``weights`` None needs ``random_init=True``
    (tests, smoke runs), so a forgotten path never trains from scratch silently; given weights
    always win over ``random_init``.
    """
    spec = get_method(method)
    config = make_method_config(method, **(method_options or {}))
    backbone_cfg = backbone if isinstance(backbone, BackboneConfig) else get_backbone_config(backbone)
    config.check_backbone(backbone_cfg)
    _positive_int("num_classes", num_classes)
    _positive_int("num_frames", num_frames)
    if weights is None and not random_init:
        raise WeightsError(f"no weights given for backbone {backbone_cfg.name!r}: pass weights=<file> "
                           "(OpenAI ViT-B-16.pt, an open_clip or timm checkpoint, a released "
                           "ST-Adapter checkpoint) or 'open_clip:MODEL/TAG' from the local cache; "
                           "random_init=True only for tests")
    source = read_weights(weights, backbone_cfg) if weights is not None else None

    encoder = FrameEncoder(backbone_cfg)
    if source is not None:
        load_backbone(encoder, source)
    model = VideoClassifier(encoder, num_classes, num_frames, method, config)
    model.declare_trainable(spec.attach(model, config))
    if source is not None and source.extras:
        load_extras(model, source)
    return model
