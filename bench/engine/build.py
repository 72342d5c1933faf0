"""From a run config to the model and datasets it trains on."""
from __future__ import annotations

import torch
from torch import nn

from bench.config import RANDOM_WEIGHTS, RunConfig
from bench.counting import Counts, count_model
from bench.engine.distributed import DistContext
from methods import fast


def resolve_weights(weights: str | None) -> str | None:
    """A ``pretrain:`` reference becomes the cached file (pre-training it on first use)."""
    if weights is not None and weights.startswith("pretrain:"):
        from bench.engine import pretrain
        return str(pretrain.ensure_pretrained(weights))
    return weights


def build_run_model(cfg: RunConfig, num_classes: int) -> nn.Module:
    from methods import build_model, load_init
    random_init = cfg.weights == RANDOM_WEIGHTS
    model = build_model(cfg.method, cfg.backbone, num_classes=num_classes,
                        num_frames=cfg.recipe.clip.num_frames,
                        weights=None if random_init else resolve_weights(cfg.weights),
                        random_init=random_init, method_options=dict(cfg.method_options))
    model.head.dropout.p = cfg.recipe.head_dropout
    if cfg.init is not None:
        load_init(model, cfg.init)
    return model


def build_run_dataset(cfg: RunConfig, split: str, train: bool, device_transforms: bool = False):
    """A split of the run's data; a tuning trial's "val" is the held-out part of the training list."""
    from bench.data import build_dataset
    return build_dataset(cfg.dataset, split, cfg.recipe.clip, train=train, root=cfg.data_root, seed=cfg.seed,
                         synth=cfg.synth, device_transforms=device_transforms,
                         holdout=None if cfg.trial is None else cfg.trial.holdout)


def prepare_model(cfg: RunConfig, num_classes: int, ctx: DistContext,
                  amp_dtype) -> tuple[nn.Module, Counts | None, list[str]]:
    """Build, count (the plain model, before any change, on rank 0), move, and apply the device's
    function-preserving fast paths of ``methods.fast`` (results/perf/NOTES.md measures each); hold
    frozen weights in half precision if the recipe asks (trainable weights stay fp32 under autocast).
    Returns the model, its counts and the names of the fast paths applied."""
    model = build_run_model(cfg, num_classes)
    counts = count_model(model, cfg.recipe.clip.num_frames, cfg.recipe.clip.input_size) if ctx.is_main else None
    model.to(ctx.device)
    if ctx.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(ctx.device)
    applied = fast.apply_fast_paths(model, ctx.device.type)
    if cfg.recipe.half_frozen and amp_dtype is not None:
        fast.hold_frozen_in(model, amp_dtype)
        applied.append("frozen_weights_in_" + str(amp_dtype).removeprefix("torch."))
    return model, counts, applied
