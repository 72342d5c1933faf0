"""Tiny real runs for the engine and launcher tests: the synthetic world's mp4 files through decord,
a 4-block ViT, a few optimizer steps."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.config import SYNTH, RunConfig, effective_precision
from bench.data.spec import ClipSpec
from bench.data.synthetic import SynthConfig
from bench.engine.checkpoint import CHECKPOINT_NAME
from bench.engine.loop import work_dir

TINY_WORLD = SynthConfig(frames=8, train_per_class=2, val_per_class=1)  # 20 train / 10 val clips
# k400-style augmentation (random short side, crop, flip) so that the augmentation RNG is exercised.
TINY_CLIP = ClipSpec(num_frames=4, sampling="dense", stride=2, input_size=32, augment="k400",
                     short_side_range=(32, 36), test_clips=2, test_crops=1)
TINY_RECIPE = dataclasses.replace(SYNTH, name="tiny", epochs=3, warmup_epochs=1, batch_size=8, base_lr=0.5,
                                  clip=TINY_CLIP, method_lr=False)


def generated_tiny_world(root: Path) -> Path:
    """``root`` with the tiny world's videos written, so that the tests' jobs only read them."""
    from bench.data import build_dataset
    cfg = tiny_run(root)
    build_dataset(cfg.dataset, "train", cfg.recipe.clip, True, root=root, synth=cfg.synth)
    return root


def tiny_run(data_root: Path, method: str = "st_adapter", seed: int = 0, **recipe_changes) -> RunConfig:
    """A tiny run planned, as bench.run plans it, for this machine's device."""
    options = {"width": 16} if method in ("st_adapter", "adapter") else {}
    recipe = dataclasses.replace(TINY_RECIPE, **recipe_changes)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    return RunConfig(method=method, dataset="synth_motion", backbone="vit_tiny_test", recipe=recipe, seed=seed,
                     weights="random", method_options=options, synth=TINY_WORLD, data_root=str(data_root),
                     precision=effective_precision(recipe.precision, device))


def final_weights(results: Path, cfg: RunConfig) -> dict[str, torch.Tensor]:
    """The trainable weights a finished run kept (Execution(keep_checkpoint=True))."""
    state = torch.load(work_dir(results, cfg) / CHECKPOINT_NAME, map_location="cpu", weights_only=False)
    return state["trainable"]


def same_metrics(a, b) -> bool:
    return (a.top1, a.top5, a.per_class_top1) == (b.top1, b.top5, b.per_class_top1)


def trained(weights: dict[str, torch.Tensor]) -> bool:
    """ST-Adapter's conv starts at zero: clearly non-zero taps mean the steps really moved the weights."""
    return max(v.abs().max().item() for k, v in weights.items() if ".conv." in k) > 1e-3


def assert_ddp_matches_single(cfg: RunConfig, single, two_dir: Path, one_dir: Path) -> None:
    """A 2-process run with micro-batch 4 equals the 1-process run: metrics exactly, weights to 1e-5."""
    from bench.store.predictions import load_predictions
    from bench.store.records import load_records
    [ddp] = load_records(two_dir)
    assert ddp.extra["world_size"] == 2 and ddp.extra["micro_batch"] == 4
    assert same_metrics(single, ddp)
    # the ranks' per-video rows come back whole and in dataset order, as one process has them
    mine, theirs = load_predictions(one_dir, single), load_predictions(two_dir, ddp)
    for name in ("video_ids", "labels", "source_index", "topk_index"):
        assert (getattr(mine, name) == getattr(theirs, name)).all(), name
    assert np.allclose(mine.topk_prob, theirs.topk_prob, atol=1e-5)
    assert ddp.curves["train"]["loss"] == pytest.approx(single.curves["train"]["loss"], rel=1e-5)
    assert ddp.curves["eval"] == single.curves["eval"]
    w_one, w_two = final_weights(one_dir, cfg), final_weights(two_dir, cfg)
    assert trained(w_one)
    assert all(torch.allclose(w_one[k], w_two[k], atol=1e-5) for k in w_one)
