"""The synthetic world: deterministic, cached atomically, read through decord, and built so that a
frame-order-blind classifier reads appearance but is at chance within synth_motion's reversed pairs."""
import multiprocessing

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bench.data import ClipSpec, SynthConfig, SynthConfigError, build_dataset, ensure_synthetic, make_stills, read_index
from bench.data.decode import FrameCache, process_frame_cache, read_frames
from bench.data.synthetic import class_names, make_clip

TINY = SynthConfig(frames=8, train_per_class=1, val_per_class=1)
PROBE = SynthConfig(frames=8, train_per_class=16, val_per_class=12)


def tree_bytes(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_generation_is_deterministic_and_keyed_by_config(tmp_path):
    first = ensure_synthetic("synth_motion", TINY, tmp_path / "a", progress=False)
    second = ensure_synthetic("synth_motion", TINY, tmp_path / "b", progress=False)
    assert first.name == second.name and tree_bytes(first) == tree_bytes(second)
    other = ensure_synthetic("synth_motion", SynthConfig(frames=8, train_per_class=1, val_per_class=1, seed=1),
                             tmp_path / "a", progress=False)
    assert other != first
    video = "videos/train/000003.mp4"
    assert (first / video).read_bytes() != (other / video).read_bytes()


def _generate(root):
    return str(ensure_synthetic("synth_appearance", TINY, root, progress=False))


def test_concurrent_first_use_yields_one_complete_copy(tmp_path):
    with multiprocessing.get_context("fork").Pool(2) as pool:
        folders = pool.map(_generate, [tmp_path, tmp_path])
    assert folders[0] == folders[1]
    assert [p.name for p in (tmp_path / "synth").iterdir()] == [folders[0].rsplit("/", 1)[1]]  # no temp dirs left
    entries = read_index("list", "train", folders[0]).entries
    assert len(entries) == 10 and all(e.path.is_file() for e in entries)


def test_reversed_pair_is_the_same_clip_backwards():
    for pair in range(5):
        forward = make_clip("synth_motion", 2 * pair, 8, 32, np.random.default_rng(pair))
        backward = make_clip("synth_motion", 2 * pair + 1, 8, 32, np.random.default_rng(pair))
        assert np.array_equal(backward, forward[::-1]) and not np.array_equal(forward, backward)


def test_unreadable_size_is_refused(tmp_path):
    with pytest.raises(SynthConfigError, match="48 px"):
        ensure_synthetic("synth_motion", SynthConfig(size=48, frames=2, train_per_class=1, val_per_class=1),
                         tmp_path, progress=False)


def test_stills_labels_follow_attributes_and_repeat():
    stills = make_stills(64, size=32, seed=3, position_grid=2)
    assert stills.images.shape == (64, 32, 32, 3) and len(stills.class_names) == 5 * 6 * 4
    shape, colour = stills.attributes["shape"], stills.attributes["colour_index"]
    assert np.array_equal(stills.labels // 4, shape * 6 + colour)
    assert np.array_equal(make_stills(64, size=32, seed=3, position_grid=2).images, stills.images)
    assert stills.labels.max() < len(stills.class_names) and len(np.unique(stills.labels % 4)) == 4


def test_dataset_reads_synthetic_videos_with_and_without_frame_cache(tmp_path):
    spec = ClipSpec(num_frames=4, sampling="uniform", input_size=32, augment="none", short_side_range=(32, 32),
                    test_clips=1)
    cached = build_dataset("synth_motion", "val", spec, False, tmp_path, synth=TINY)
    plain = build_dataset("synth_motion", "val", spec, False, tmp_path, synth=TINY, frame_cache=False)
    assert cached.class_names == class_names("synth_motion") and len(cached) == 10
    for i in (0, 7):
        assert torch.equal(cached[i]["video"], plain[i]["video"]) and cached[i]["video"].shape == (1, 3, 4, 32, 32)
    key = FrameCache.key(cached.source_list[7].path)
    assert process_frame_cache().get(key).shape == (8, 32, 32, 3)  # the whole video was kept after one read


# ---------------------------------------------------------------------------------------------------
# What a model that ignores frame order can learn from each task.

def _frame_features(clips: torch.Tensor) -> torch.Tensor:
    """(N, T, H, W, 3) uint8 -> (N, T, F): random-filter responses (what) + object centroid and size (where).

    The object is found as the difference from the clip's median frame (backgrounds are static).
    """
    videos = clips.float() / 255
    n, t, h, w, _ = videos.shape
    filters = torch.randn(48, 3, 5, 5, generator=torch.Generator().manual_seed(0)) / 5
    responses = torch.relu(F.conv2d(videos.flatten(0, 1).permute(0, 3, 1, 2) - 0.5, filters, stride=2, padding=2))
    what = torch.cat([responses.mean((2, 3)), responses.amax((2, 3))], 1).view(n, t, -1)
    difference = (videos - videos.median(1, keepdim=True).values).abs().sum(-1)
    weights = difference / (difference.sum((2, 3), keepdim=True) + 1e-6)
    xs, ys = torch.arange(w).float() / w, torch.arange(h).float() / h
    where = torch.stack([(weights * xs).sum((2, 3)), (weights * ys[:, None]).sum((2, 3)), difference.mean((2, 3))], -1)
    return torch.cat([what, where], -1)


def _logistic_regression(train_x, train_y, test_x, classes):
    mean, std = train_x.mean(0), train_x.std(0) + 1e-6
    train_x, test_x = (train_x - mean) / std, (test_x - mean) / std
    torch.manual_seed(0)
    linear = torch.nn.Linear(train_x.shape[1], classes)
    optimizer = torch.optim.LBFGS(linear.parameters(), max_iter=100, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = F.cross_entropy(linear(train_x), train_y) + 1e-3 * linear.weight.square().sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    with torch.no_grad():
        return linear(test_x)


def _task_features(task, root):
    out = {}
    for split in ("train", "val"):
        index = read_index(task, split, root, PROBE)
        clips = [read_frames(e.path, lambda n: np.arange(n))[0] for e in index.entries]
        out[split] = (_frame_features(torch.from_numpy(np.stack(clips))),
                      torch.tensor([e.label for e in index.entries]))
    return out


def _accuracies(features, summarise):
    (train_x, train_y), (val_x, val_y) = features["train"], features["val"]
    logits = _logistic_regression(summarise(train_x), train_y, summarise(val_x), 10)
    pair = val_y // 2 * 2
    within_pair = logits.gather(1, torch.stack([pair, pair + 1], 1)).argmax(1) == val_y % 2
    return (logits.argmax(1) == val_y).float().mean().item(), within_pair.float().mean().item()


def order_blind(x):
    return x.mean(1)


def order_aware(x):
    return torch.cat([part.mean(1) for part in x.tensor_split(3, dim=1)], 1)


@pytest.mark.slow
def test_frame_order_blind_classifier(tmp_path):
    """Mean of per-frame features + logistic regression, on 120 validation clips per task (chance 0.1)."""
    appearance = _task_features("synth_appearance", tmp_path)
    motion = _task_features("synth_motion", tmp_path)
    appearance_accuracy, _ = _accuracies(appearance, order_blind)
    assert appearance_accuracy > 0.3
    _, blind_within_pair = _accuracies(motion, order_blind)
    assert 0.3 < blind_within_pair < 0.7  # chance is 0.5; the classes of a pair share one frame distribution
    _, aware_within_pair = _accuracies(motion, order_aware)
    assert aware_within_pair > 0.75  # the same features in temporal thirds do read the direction
