"""Linear probe from cached features (bench.features): the cache holds exactly what the head sees,
training uses the engine's optimiser, schedule and sample order, evaluation averages view softmaxes."""
from __future__ import annotations

import pytest
import torch

from bench.engine.features import (
    FeatureCache,
    FeatureCacheError,
    cached_linear_probe,
    evaluate_head,
    extract_features,
    train_head,
)
from methods import build_model

CPU = torch.device("cpu")


class Clips(torch.utils.data.Dataset):
    """Random clips with labels; ``views`` None gives (3,T,H,W) items, else (V,3,T,H,W)."""

    def __init__(self, length: int, views: int | None, num_classes: int = 3, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.videos = torch.randn(length, *((views,) if views else ()), 3, 4, 32, 32, generator=g)
        self.labels = torch.arange(length) % num_classes

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict:
        return {"video": self.videos[i], "label": int(self.labels[i]), "index": i}


@pytest.fixture(scope="module")
def probe():
    torch.manual_seed(0)
    model = build_model("linear_probe", "vit_tiny_test", num_classes=3, num_frames=4, random_init=True)
    return model.eval()


def test_cached_features_are_exactly_what_the_head_sees(probe):
    video = Clips(2, None).videos
    with torch.no_grad():
        torch.testing.assert_close(probe.head(probe.features(video)), probe(video), rtol=0, atol=0)


def test_extract_features_one_row_per_view_in_dataset_order(probe):
    data = Clips(5, views=3)
    cache = extract_features(probe, data, batch_size=2, device=CPU)
    assert cache.features.shape == (5, 3, probe.encoder.width) and cache.num_views == 3 and len(cache) == 5
    assert torch.equal(cache.labels, data.labels)
    with torch.no_grad():
        expected = probe.features(data.videos[3, 1:2])
    torch.testing.assert_close(cache.features[3, 1], expected[0])
    single = extract_features(probe, Clips(4, views=None), batch_size=3, device=CPU)
    assert single.features.shape == (4, 1, probe.encoder.width)


def test_train_head_learns_separable_features_and_uses_every_view():
    g = torch.Generator().manual_seed(1)
    labels = torch.arange(64) % 4
    centres = torch.randn(4, 16, generator=g) * 3
    features = centres[labels][:, None, :] + 0.3 * torch.randn(64, 2, 16, generator=g)
    cache = FeatureCache(features, labels)
    head = torch.nn.Linear(16, 4)
    seen_views = set()
    original = head.forward

    def recording(x):
        seen_views.update(tuple(row) for row in x[:, :1].tolist())
        return original(x)
    head.forward = recording
    losses = train_head(head, cache, epochs=6, batch_size=16, lr=5e-2, weight_decay=0.01, betas=(0.9, 0.999),
                        warmup_epochs=1, seed=0, device=CPU)
    del head.forward  # back to the class's forward
    assert len(losses) == 6 and losses[-1] < 0.5 * losses[0]
    first_coords = {tuple(features[i, v, :1].tolist()) for i in range(64) for v in range(2)}
    assert seen_views == first_coords  # both views of every video were trained on
    assert evaluate_head(head, cache, 4)["top1"] == 100.0


def test_evaluate_head_averages_view_probabilities():
    head = torch.nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        head.weight.copy_(torch.eye(2))
    # video 0: views vote (0 strongly, 1 weakly) -> class 0; video 1: views vote 1 and 1 -> class 1
    features = torch.tensor([[[5.0, 0.0], [0.0, 0.5]], [[0.0, 1.0], [0.0, 2.0]]])
    metrics = evaluate_head(head, FeatureCache(features, torch.tensor([0, 0])), num_classes=2)
    assert metrics["top1"] == 50.0 and metrics["top5"] == 100.0 and metrics["videos"] == 2
    assert metrics["per_class_top1"] == [50.0, None]


def test_cache_errors_name_the_problem():
    with pytest.raises(FeatureCacheError, match="\\[N, V, C\\]"):
        FeatureCache(torch.zeros(3, 4), torch.zeros(3, dtype=torch.long))
    with pytest.raises(FeatureCacheError, match="fewer than one batch"):
        train_head(torch.nn.Linear(4, 2), FeatureCache(torch.zeros(3, 1, 4), torch.zeros(3, dtype=torch.long)),
                   epochs=1, batch_size=8, lr=1e-3, weight_decay=0.0, betas=(0.9, 0.999), warmup_epochs=0,
                   seed=0, device=CPU)


def test_cached_linear_probe_end_to_end(probe):
    result = cached_linear_probe(probe, Clips(12, views=2), Clips(6, views=2, seed=1), epochs=2, batch_size=4,
                                 lr=1e-3, weight_decay=0.01, betas=(0.9, 0.999), warmup_epochs=0.5, seed=0,
                                 device=CPU)
    assert set(result.timings_s) == {"extract_train", "extract_val", "train_head", "evaluate", "total"}
    assert len(result.epoch_losses) == 2 and 0 <= result.metrics["top1"] <= 100
    assert result.metrics["videos"] == 6 and "none" in result.augmentation
