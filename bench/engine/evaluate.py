"""Multi-view evaluation of a video classifier."""
from __future__ import annotations

from typing import Any

import torch

from bench.engine.batching import replaced_indices
from bench.engine.distributed import DistContext, all_reduce
from bench.engine.seeding import loader_generator


@torch.no_grad()
def evaluate(model, dataset, views: int, batch_clips: int, amp_dtype, ctx: DistContext,
             loader_args: dict) -> tuple[dict[str, Any], set[int]]:
    """Multi-view evaluation: softmax per view, mean over a video's views, video-level top-1/top-5.

    Videos are split over ranks without padding, and the per-class counts are summed over ranks, so
    every video is counted exactly once whatever the world size.
    """
    model.eval()
    batch_videos = max(1, batch_clips // views)
    mine = list(range(ctx.rank, len(dataset), ctx.world_size))
    batches = [mine[i:i + batch_videos] for i in range(0, len(mine), batch_videos)]
    loader = torch.utils.data.DataLoader(dataset, batch_sampler=batches, **loader_args,
                                         generator=loader_generator(0, -1))
    num_classes = dataset.num_classes
    correct1 = torch.zeros(num_classes, dtype=torch.float64)
    correct5 = torch.zeros(num_classes, dtype=torch.float64)
    total = torch.zeros(num_classes, dtype=torch.float64)
    broken = set()
    device = ctx.device
    for batch in loader:
        video = batch["video"].to(device, non_blocking=True)  # (B, V, 3, T, H, W)
        b, v = video.shape[:2]
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            logits = model(video.flatten(0, 1))
        probs = logits.float().softmax(dim=-1).view(b, v, -1).mean(dim=1).cpu()
        labels = batch["label"]
        top = probs.topk(min(5, num_classes), dim=-1).indices
        hit1 = top[:, 0] == labels
        hit5 = (top == labels[:, None]).any(dim=-1)
        total.index_add_(0, labels, torch.ones(b, dtype=torch.float64))
        correct1.index_add_(0, labels, hit1.double())
        correct5.index_add_(0, labels, hit5.double())
        broken.update(replaced_indices(batch))
    stacked = all_reduce(torch.stack([correct1, correct5, total]), ctx)
    correct1, correct5, total = stacked
    videos = total.sum().item()
    per_class = [round(100.0 * c / t, 4) if t > 0 else None for c, t in zip(correct1.tolist(), total.tolist())]
    return {"top1": 100.0 * correct1.sum().item() / videos, "top5": 100.0 * correct5.sum().item() / videos,
            "per_class_top1": per_class, "videos": int(videos)}, broken
