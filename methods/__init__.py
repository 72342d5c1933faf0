"""PETL methods that turn a pre-trained image ViT into a video classifier, behind one interface.

``build_model("st_adapter", "clip_vit_b16", num_classes=400, num_frames=8, weights="ViT-B-16.pt",
method_options={"preset": "12x384"})`` returns a ``VideoClassifier`` whose trainable set the method
declared (``trainable_named_parameters``). Methods differ only in the modules they insert at the
frame encoder's sites and in what they unfreeze; encoder, temporal pooling and head are shared.
A method is one file that registers itself (``methods.registry``); files of this package are
found by themselves, others are loaded with ``load_method_file`` or ``$BENCH_METHOD_FILES``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from .backbone import (
    BackboneConfig,
    BackboneError,
    BlockFeatures,
    Branch,
    EncoderSiteError,
    FrameEncoder,
    get_backbone_config,
    list_backbones,
    register_backbone,
)
from .base import (
    MethodConfig,
    MethodConfigError,
    MethodRegistryError,
    MethodSpec,
    UnknownMethodError,
    VideoClassifier,
    VideoHead,
    WeightsError,
    last_blocks,
)
from .registry import METHOD_FILES_ENV, get_method, list_methods, load_method_file, make_method_config, register_method
from .weights import (
    check_init,
    check_weights,
    export_st_adapter_checkpoint,
    load_backbone,
    load_extras,
    load_init,
    read_weights,
)

__all__ = [
    "BackboneConfig", "BackboneError", "BlockFeatures", "Branch", "EncoderSiteError", "FrameEncoder",
    "METHOD_FILES_ENV", "MethodConfig", "MethodConfigError", "MethodRegistryError", "MethodSpec",
    "UnknownMethodError", "VideoClassifier", "VideoHead", "WeightsError", "build_model", "check_init", "check_weights",
    "export_st_adapter_checkpoint", "get_backbone_config", "get_method", "last_blocks", "load_init",
    "list_backbones", "list_methods", "load_method_file", "make_method_config", "register_backbone",
    "register_method",
]


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
