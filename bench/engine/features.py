"""Linear probe from cached features: the frozen backbone runs once per view, the head trains on the cache.

A linear probe's backbone is frozen and, with no augmentation, deterministic, so running it every
epoch recomputes the same features. Here each video's views are encoded once (``extract_features``:
the pooled per-frame CLS after the frozen final LayerNorm, exactly what the head sees in
``VideoClassifier.forward``), then the head (dropout + linear) trains on the cache for the recipe's
epochs with the engine's optimiser, schedule and sample order (``train_head``), and is evaluated on
cached validation views (``evaluate_head``). ``cached_linear_probe`` chains the three and times them.

The difference from the end-to-end linear probe is the training input: fixed, un-augmented views
instead of a fresh augmented clip per epoch (records say so in ``augmentation``). In epoch ``e``
video ``i`` uses its view ``(i + e) % V``, so every view is seen and every epoch has as many steps as
the end-to-end run.
"""
from __future__ import annotations

import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from bench.engine.optim import WarmupCosine, make_optimizer
from bench.engine.seeding import epoch_order
from bench.progress import progress_bar

AUGMENTATION = "none: features of fixed test-style views, extracted once per view"


class FeatureCacheError(ValueError):
    """A cache that cannot be used as asked (empty, fewer clips than a batch, mismatched shapes)."""


@dataclass
class FeatureCache:
    """Per-view features [N, V, C] (fp32) and labels [N] of a dataset, in dataset order."""

    features: torch.Tensor
    labels: torch.Tensor

    def __post_init__(self) -> None:
        if self.features.dim() != 3 or self.labels.shape != self.features.shape[:1]:
            raise FeatureCacheError(f"features must be [N, V, C] with labels [N]; got "
                                    f"{tuple(self.features.shape)} and {tuple(self.labels.shape)}")

    @property
    def num_views(self) -> int:
        return self.features.shape[1]

    def __len__(self) -> int:
        return self.features.shape[0]


@torch.no_grad()
def extract_features(model: nn.Module, dataset: Dataset, batch_size: int, device: torch.device,
                     amp_dtype: torch.dtype | None = None, num_workers: int = 0,
                     progress: bool = False) -> FeatureCache:
    """Encode every view of every item once. Items are dicts with "video" (3,T,H,W) or (V,3,T,H,W)."""
    model.eval()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                        pin_memory=device.type == "cuda")
    features, labels = [], []
    for batch in progress_bar(loader, desc="features", disable=not progress):
        video = batch["video"]
        if video.dim() == 5:
            video = video.unsqueeze(1)
        items, views = video.shape[:2]
        with torch.autocast(device.type, dtype=amp_dtype) if amp_dtype is not None else nullcontext():
            pooled = model.features(video.flatten(0, 1).to(device, non_blocking=True))
        features.append(pooled.float().view(items, views, -1).cpu())
        labels.append(torch.as_tensor(batch["label"]))
    if not features:
        raise FeatureCacheError("the dataset is empty: no features to cache")
    return FeatureCache(torch.cat(features), torch.cat(labels).long())


def train_head(head: nn.Module, cache: FeatureCache, *, epochs: int, batch_size: int, lr: float,
               weight_decay: float, betas: tuple[float, float], warmup_epochs: float, seed: int,
               device: torch.device) -> list[float]:
    """Train ``head`` (dropout + linear) on cached features; returns the mean loss of every epoch.

    Same optimiser (AdamW, no decay on biases), per-iteration warmup + cosine schedule and
    per-(seed, epoch) sample order as the end-to-end engine; the last incomplete batch is dropped.
    """
    steps_per_epoch = len(cache) // batch_size
    if steps_per_epoch == 0:
        raise FeatureCacheError(f"{len(cache)} cached clips is fewer than one batch ({batch_size})")
    head.to(device).train()
    optimizer = make_optimizer(list(head.named_parameters()), lr, weight_decay, betas)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, WarmupCosine(round(warmup_epochs * steps_per_epoch), steps_per_epoch * epochs))
    features, labels = cache.features.to(device), cache.labels.to(device)
    losses = []
    for epoch in range(epochs):
        order = epoch_order(len(cache), seed, epoch).to(device)
        views = (order + epoch) % cache.num_views
        total = torch.zeros((), device=device)
        for step in range(steps_per_epoch):
            pick = slice(step * batch_size, (step + 1) * batch_size)
            loss = F.cross_entropy(head(features[order[pick], views[pick]]), labels[order[pick]])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            total += loss.detach()
        losses.append(total.item() / steps_per_epoch)
    return losses


@torch.no_grad()
def evaluate_head(head: nn.Module, cache: FeatureCache, num_classes: int) -> dict[str, Any]:
    """Softmax per view, mean over a video's views, video-level top-1/top-5 (as the engine)."""
    head.eval()
    device = next(head.parameters()).device
    probs = head(cache.features.to(device)).float().softmax(dim=-1).mean(dim=1).cpu()
    top = probs.topk(min(5, num_classes), dim=-1).indices
    hit1 = top[:, 0] == cache.labels
    hit5 = (top == cache.labels[:, None]).any(dim=-1)
    total = torch.bincount(cache.labels, minlength=num_classes).double()
    correct = torch.bincount(cache.labels[hit1], minlength=num_classes).double()
    per_class = [round(100.0 * c / t, 4) if t > 0 else None for c, t in zip(correct.tolist(), total.tolist())]
    return {"top1": 100.0 * hit1.double().mean().item(), "top5": 100.0 * hit5.double().mean().item(),
            "per_class_top1": per_class, "videos": len(cache)}


@dataclass
class CachedProbeResult:
    metrics: dict[str, Any]
    epoch_losses: list[float]
    timings_s: dict[str, float] = field(default_factory=dict)
    augmentation: str = AUGMENTATION


def cached_linear_probe(model: nn.Module, train_set: Dataset, val_set: Dataset, *, epochs: int,
                        batch_size: int, lr: float, weight_decay: float, betas: tuple[float, float],
                        warmup_epochs: float, seed: int, device: torch.device,
                        amp_dtype: torch.dtype | None = None, num_workers: int = 0,
                        progress: bool = False) -> CachedProbeResult:
    """Extract train and val features once, train ``model.head`` on them, evaluate; timed by phase.

    ``model`` is a built linear-probe ``VideoClassifier`` (frozen encoder) already on ``device``;
    ``train_set`` should give un-augmented views (e.g. built with ``train=False``).
    """
    timings: dict[str, float] = {}

    def timed(name: str, fn):
        _sync(device)
        start = time.perf_counter()
        out = fn()
        _sync(device)
        timings[name] = time.perf_counter() - start
        return out

    train = timed("extract_train", lambda: extract_features(model, train_set, batch_size, device, amp_dtype,
                                                            num_workers, progress))
    val = timed("extract_val", lambda: extract_features(model, val_set, batch_size, device, amp_dtype,
                                                        num_workers, progress))
    losses = timed("train_head", lambda: train_head(
        model.head, train, epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay,
        betas=betas, warmup_epochs=warmup_epochs, seed=seed, device=device))
    metrics = timed("evaluate", lambda: evaluate_head(model.head, val, model.num_classes))
    timings["total"] = sum(timings.values())
    return CachedProbeResult(metrics, losses, timings)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
