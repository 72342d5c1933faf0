"""The dry run: what a grid would cost (parameters, GFLOPs per view x views, GPU-hours) without training."""
from __future__ import annotations

import dataclasses
import json
from typing import Sequence

from bench.config import RunConfig
from bench.grid import NOMINAL_SIZES, DataFacts, data_key

# Sustained training rate for the GPU-hour estimate: full fine-tuning of ViT-B/16 (8x224, 32 clips,
# bf16) took 94 ms per step on one H200 (DESIGN.md §9) = 3 x 140.5 GFLOPs x 32 / 0.094 s.
SUSTAINED_FLOPS = 3 * 140.5e9 * 32 / 0.094


def dry_run(runs: Sequence[RunConfig], facts: dict[tuple, DataFacts]) -> None:
    """One line per (dataset, method): parameters, GFLOPs x views and estimated GPU-hours."""
    from tabulate import tabulate

    from bench.cache import cache_root
    from bench.counting import cached_count
    from methods import build_model, get_backbone_config
    rows, total_hours = [], 0.0
    for cfg in runs:
        data, clip = facts[data_key(cfg)], cfg.recipe.clip
        identity = {"method": cfg.method, "options": cfg.method_options, "classes": data.num_classes,
                    "backbone": dataclasses.asdict(get_backbone_config(cfg.backbone))}
        counts = cached_count(
            identity, lambda: build_model(cfg.method, cfg.backbone, data.num_classes, clip.num_frames,
                                          random_init=True, method_options=dict(cfg.method_options)),
            clip.num_frames, clip.input_size, cache_root() / "counts")
        flops = counts.gflops_per_view * 1e9 * (3 * cfg.recipe.epochs * data.train_clips
                                                 + clip.views * data.val_videos)
        hours = flops / SUSTAINED_FLOPS / 3600
        total_hours += hours
        rows.append((cfg.dataset, _name(cfg), cfg.seed, cfg.recipe.name, f"{counts.params_trainable:,}",
                     f"{counts.params_total:,}", f"{counts.gflops_per_view:.1f} x {clip.views}",
                     f"{hours:.1f}", cfg.hash()))
    print(tabulate(rows, headers=("dataset", "method", "seed", "recipe", "trainable", "total",
                                  "GFLOPs/view x views", "GPU-h (est.)", "config"),
                   colalign=("left", "left", "right", "left", "right", "right", "right", "right", "left")))
    nominal = sorted({cfg.dataset for cfg in runs
                      if not facts[data_key(cfg)].measured})
    print(f"\n{len(runs)} runs, about {total_hours:,.0f} GPU-hours in total (estimate: 3 x forward FLOPs "
          f"per training clip, at the {SUSTAINED_FLOPS / 1e12:.0f} TFLOP/s full fine-tuning sustained on "
          "one H200, DESIGN.md §9).")
    if nominal:
        print(f"Data not found for {', '.join(nominal)}: nominal sizes used "
              f"({', '.join(f'{d}: {NOMINAL_SIZES[d][1]:,} train / {NOMINAL_SIZES[d][2]:,} val' for d in nominal)}).")
    for cfg in runs[:1]:
        print(f"\nfirst run's config ({cfg.name}):\n{json.dumps(cfg.to_dict(), indent=2)}")


def _name(cfg: RunConfig) -> str:
    """The method, and a tuning trial's grid point: ``st_adapter (trial lr=0.032)``."""
    if cfg.trial is None:
        return cfg.method
    return f"{cfg.method} (trial {', '.join(f'{p.knob}={p.value:g}' for p in cfg.trial.point)})"
