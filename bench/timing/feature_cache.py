"""The linear probe from cached features against the end-to-end one, same schedule."""
from __future__ import annotations

import dataclasses
import time
from typing import Any

import torch

from bench.timing.cases import DTYPES, SETTINGS, BenchSpec, Case
from bench.timing.step import bench_autocast, make_optimizer, prepare_model, release_memory, synchronize, train_step_fn


class RandomClips(torch.utils.data.Dataset):
    """In-memory random clips (a pool reused round-robin), so the comparison times no decoding."""

    def __init__(self, length: int, spec: BenchSpec, views: int | None, pool: int = 16):
        g = torch.Generator().manual_seed(4)
        shape = (3, spec.num_frames, spec.input_size, spec.input_size)
        self.clips = torch.randn(pool, *((views,) if views else ()), *shape, generator=g)
        self.length, self.num_classes = length, spec.num_classes

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"video": self.clips[i % len(self.clips)], "label": i % self.num_classes, "index": i}


def compare_feature_cache(spec: BenchSpec, epochs: int = 12, train_clips: int = 512, val_videos: int = 64,
                          views: int = 3) -> dict[str, Any]:
    """Wall time of the linear probe end to end (every epoch through the frozen backbone) against
    ``bench.features.cached_linear_probe`` (features once per view, head on the cache), same epochs,
    same optimiser and schedule; data are in-memory random clips, so decoding is excluded from both."""
    from bench.engine.features import cached_linear_probe
    from bench.engine.optim import WarmupCosine
    from bench.engine.seeding import epoch_order

    device = torch.device(spec.device)
    amp = DTYPES[spec.autocast]
    case, setting = Case("linear_probe", "linear_probe"), SETTINGS["fast"]
    train_set, val_set = RandomClips(train_clips, spec, None), RandomClips(val_videos, spec, views)
    steps_per_epoch = train_clips // spec.batch_size

    model = prepare_model(case, setting, spec)
    optimizer = make_optimizer(model, spec.lr, device)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, WarmupCosine(2 * steps_per_epoch,
                                                                          epochs * steps_per_epoch))
    step = train_step_fn(model, optimizer, spec, device)
    synchronize(device)
    start = time.perf_counter()
    for epoch in range(epochs):
        order = epoch_order(train_clips, 0, epoch).tolist()
        batches = [order[i * spec.batch_size:(i + 1) * spec.batch_size] for i in range(steps_per_epoch)]
        loader = torch.utils.data.DataLoader(train_set, batch_sampler=batches,
                                             pin_memory=device.type == "cuda")
        for batch in loader:
            step((batch["video"].to(device, non_blocking=True), batch["label"].to(device)))
            scheduler.step()
    loader = torch.utils.data.DataLoader(val_set, batch_size=max(1, spec.batch_size // views))
    with torch.no_grad(), bench_autocast(device, spec):
        model.eval()
        for batch in loader:
            model(batch["video"].flatten(0, 1).to(device))
    synchronize(device)
    end_to_end = time.perf_counter() - start
    del model, optimizer
    release_memory(device)

    model = prepare_model(case, setting, spec)
    cached = cached_linear_probe(model, train_set, val_set, epochs=epochs, batch_size=spec.batch_size,
                                 lr=spec.lr, weight_decay=0.01, betas=(0.9, 0.999), warmup_epochs=2,
                                 seed=0, device=device, amp_dtype=amp)
    del model
    release_memory(device)
    return {"kind": "perf_feature_cache", "epochs": epochs, "train_clips": train_clips,
            "val_videos": val_videos, "views": views, "end_to_end_s": end_to_end,
            "cached_s": cached.timings_s["total"], "cached_timings_s": cached.timings_s,
            "speedup": end_to_end / cached.timings_s["total"], "augmentation": cached.augmentation,
            "data": "in-memory random clips (decoding excluded from both)", "spec": dataclasses.asdict(spec)}
