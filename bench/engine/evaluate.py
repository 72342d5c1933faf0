"""Multi-view evaluation of a video classifier, video by video."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from bench.data.device_batches import DeviceBatches
from bench.engine.distributed import DistContext
from bench.engine.seeding import loader_generator
from bench.store.predictions import TOP_K, Predictions


@dataclass(frozen=True, eq=False)
class Evaluation:
    """Every validation video's outcome, in dataset order, on every rank."""

    source_index: np.ndarray  # (N,) the video actually evaluated (a broken one is replaced)
    labels: np.ndarray  # (N,) the label it was scored against (the evaluated video's)
    topk_index: np.ndarray  # (N, k)
    topk_prob: np.ndarray  # (N, k)
    num_classes: int
    fallback: np.ndarray  # (N,) whether the evaluated video was read by the fallback reader

    @property
    def fallback_sources(self) -> set[int]:
        """Indices of the videos the fallback reader read (they are evaluated, not broken)."""
        return set(self.source_index[self.fallback].tolist())

    @property
    def broken(self) -> set[int]:
        """Dataset indices whose own video could not be read."""
        return set(np.flatnonzero(self.source_index != np.arange(len(self.source_index))).tolist())

    def metrics(self) -> dict[str, Any]:
        """Video-level top-1/top-5 (%) and per-class top-1 over the videos that could be read, each
        counted once. A broken validation video is skipped (its stand-in, the next readable video,
        is already counted as itself): the denominator is the videos evaluated."""
        kept = self.source_index == np.arange(len(self.source_index))
        labels, top = self.labels[kept], self.topk_index[kept]
        if not len(labels):
            raise RuntimeError("no validation video could be read")
        hit1 = top[:, 0] == labels
        hit5 = (top[:, :5] == labels[:, None]).any(axis=1)
        total = np.bincount(labels, minlength=self.num_classes)
        correct = np.bincount(labels, weights=hit1, minlength=self.num_classes)
        per_class = [round(100.0 * c / t, 4) if t > 0 else None for c, t in zip(correct.tolist(), total.tolist())]
        videos = len(labels)
        return {"top1": 100.0 * int(hit1.sum()) / videos, "top5": 100.0 * int(hit5.sum()) / videos,
                "per_class_top1": per_class, "videos": videos, "skipped": int((~kept).sum())}

    def predictions(self, dataset) -> Predictions:
        """The per-video rows a record keeps: ids and listed labels come from the dataset's list."""
        listed = np.array([entry.label for entry in dataset.source_list], dtype=np.int64)
        if not (listed[self.source_index] == self.labels).all():
            raise RuntimeError("evaluated labels disagree with the dataset's list: the evaluation and the "
                               "dataset are out of step")
        return Predictions(video_ids=np.asarray(dataset.video_ids, dtype=str), labels=listed,
                           source_index=self.source_index, topk_index=self.topk_index, topk_prob=self.topk_prob)


def diverged_metrics(dataset) -> dict[str, Any]:
    """The metrics of a tuning trial whose training loss became non-finite: its weights hold no model,
    so no video counts as right (top-1 0: the worst score, never chosen over a trial that trained)."""
    labels = np.array([entry.label for entry in dataset.source_list], dtype=np.int64)
    present = np.bincount(labels, minlength=dataset.num_classes) > 0
    return {"top1": 0.0, "top5": 0.0, "per_class_top1": [0.0 if p else None for p in present.tolist()],
            "videos": len(labels), "skipped": 0, "skipped_ids": []}


@torch.no_grad()
def evaluate(model, dataset, views: int, batch_clips: int, amp_dtype, ctx: DistContext,
             loader_args: dict) -> Evaluation:
    """Multi-view evaluation: softmax per view, mean over a video's views, top-k per video.

    Videos are split over ranks without padding and every rank's rows are gathered to every rank in
    dataset order, so each video is counted exactly once whatever the world size. Probabilities stay
    on the device until the last batch is queued (no batch waits for the one before it); top-k is
    then taken on the host, as it always was.
    """
    model.eval()
    batch_videos = max(1, batch_clips // views)
    mine = list(range(ctx.rank, len(dataset), ctx.world_size))
    batches = [mine[i:i + batch_videos] for i in range(0, len(mine), batch_videos)]
    loader = DeviceBatches(torch.utils.data.DataLoader(
        dataset, batch_sampler=batches, **loader_args, collate_fn=getattr(dataset, "collate_fn", None),
        generator=loader_generator(0, -1)), getattr(dataset, "clip", None), False, ctx.device)
    k = min(TOP_K, dataset.num_classes)
    rows: dict[str, list[np.ndarray]] = {"index": [], "source_index": [], "fallback": [], "label": [], "topk_index": [],
                                         "topk_prob": []}
    device = ctx.device
    probs, labels = [], []
    for batch in loader:
        video = batch["video"].to(device, non_blocking=True)  # (B, V, 3, T, H, W)
        b, v = video.shape[:2]
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            logits = model(video.flatten(0, 1))
        probs.append(logits.float().softmax(dim=-1).view(b, v, -1).mean(dim=1))
        labels.append(batch["label"])
        rows["index"].append(batch["index"].numpy())
        rows["source_index"].append(batch["source_index"].numpy())
        rows["fallback"].append(batch["fallback"].numpy() if "fallback" in batch else np.zeros(b, bool))
    for batch_probs, batch_labels in zip(probs, labels):  # read back once, after the last batch is queued
        top = batch_probs.cpu().topk(k, dim=-1)
        rows["label"].append(batch_labels.cpu().numpy())
        rows["topk_index"].append(top.indices.numpy())
        rows["topk_prob"].append(top.values.numpy())
    local = {name: np.concatenate(parts) if parts else np.zeros((0, k) if name.startswith("topk") else 0, np.int64)
             for name, parts in rows.items()}
    return _assemble(_gather(local, ctx), dataset.num_classes)


def _gather(local: dict[str, np.ndarray], ctx: DistContext) -> list[dict[str, np.ndarray]]:
    if ctx.world_size == 1:
        return [local]
    gathered: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(gathered, local)
    return gathered


def _assemble(parts: list[dict[str, np.ndarray]], num_classes: int) -> Evaluation:
    merged = {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}
    order = np.argsort(merged["index"], kind="stable")
    if not (merged["index"][order] == np.arange(len(order))).all():
        raise RuntimeError("evaluation rows do not cover every validation video exactly once")
    return Evaluation(source_index=merged["source_index"][order].astype(np.int64),
                      labels=merged["label"][order].astype(np.int64),
                      topk_index=merged["topk_index"][order].astype(np.int64),
                      topk_prob=merged["topk_prob"][order].astype(np.float32), num_classes=num_classes,
                      fallback=merged["fallback"][order].astype(bool))
