"""Temporal samplers: which decoded-frame indices make a clip.

Pure functions of the video length, the spec and (in training) a numpy Generator, so tests can assert
exact indices and every method sees the same frames for the same (seed, epoch, sample).
"""
from __future__ import annotations

import numpy as np

from .spec import ClipSpec


def dense_indices(video_frames: int, num_frames: int, stride: int, start: int) -> np.ndarray:
    """``num_frames`` indices ``stride`` apart from ``start``; past the end the last frame repeats."""
    return np.minimum(start + stride * np.arange(num_frames), video_frames - 1)


def dense_slack(video_frames: int, num_frames: int, stride: int) -> int:
    """How many start positions beyond 0 a dense clip has (0 when the video is shorter than the clip)."""
    return max(video_frames - ((num_frames - 1) * stride + 1), 0)


def dense_train_indices(video_frames: int, num_frames: int, stride: int, rng: np.random.Generator) -> np.ndarray:
    start = int(rng.integers(0, dense_slack(video_frames, num_frames, stride) + 1))
    return dense_indices(video_frames, num_frames, stride, start)


def dense_test_indices(video_frames: int, num_frames: int, stride: int, views: int) -> np.ndarray:
    """(views, num_frames): clips spread evenly from the first to the last possible start (middle if one)."""
    slack = dense_slack(video_frames, num_frames, stride)
    starts = [slack // 2] if views == 1 else [v * slack // (views - 1) for v in range(views)]
    return np.stack([dense_indices(video_frames, num_frames, stride, s) for s in starts])


def _segment_bounds(video_frames: int, num_frames: int) -> tuple[np.ndarray, np.ndarray]:
    i = np.arange(num_frames)
    return (i * video_frames) // num_frames, ((i + 1) * video_frames) // num_frames


def uniform_train_indices(video_frames: int, num_frames: int, rng: np.random.Generator) -> np.ndarray:
    """One random frame in each of ``num_frames`` equal segments (segments shorter than a frame reuse it)."""
    low, high = _segment_bounds(video_frames, num_frames)
    picks = low + rng.integers(0, np.maximum(high - low, 1))
    return np.minimum(picks, video_frames - 1)


def uniform_test_indices(video_frames: int, num_frames: int, views: int) -> np.ndarray:
    """(views, num_frames): view v takes position (v + 1/2) / views inside every segment (midpoints if one)."""
    i = np.arange(num_frames)[None, :]
    v = np.arange(views)[:, None]
    picks = ((2 * i * views + 2 * v + 1) * video_frames) // (2 * num_frames * views)
    return np.minimum(picks, video_frames - 1)


def sample_indices(spec: ClipSpec, video_frames: int, train: bool,
                   rng: np.random.Generator | None = None) -> np.ndarray:
    """(1, T) indices in training, (test_clips, T) at test."""
    if video_frames < 1:
        raise ValueError(f"a video needs at least one frame, got {video_frames}")
    if train:
        if rng is None:
            raise ValueError("training samples need a numpy Generator")
        if spec.sampling == "dense":
            return dense_train_indices(video_frames, spec.num_frames, spec.stride, rng)[None]
        return uniform_train_indices(video_frames, spec.num_frames, rng)[None]
    if spec.sampling == "dense":
        return dense_test_indices(video_frames, spec.num_frames, spec.stride, spec.test_clips)
    return uniform_test_indices(video_frames, spec.num_frames, spec.test_clips)
