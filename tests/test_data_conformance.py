"""Every encoding a user's Kinetics or SSv2 copy may hold reads as decord reads it, through the loader.

Each case of ``video_matrix.CASES`` is written with PyAV, then read by the real ``VideoDataset`` (the
loader's path: sampling, the fast reader, broken-video handling) with K400's sampling (dense, 3 test
views) and SSv2's (uniform segments, the midpoints at test), in training (several draws) and at test.
A fallback to the other reader fails the case: it means the fast reader has a defect on that encoding.
The frames must equal decord's byte for byte. Where decord 0.6 itself does not return the true frames
(the case says how), the loader's frames must equal the true ones, every frame decoded in order, and
decord must still deviate, so a stale note fails too.
"""
from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from bench.data import ClipSpec, VideoDataset
from bench.data.decode import VideoDecodeError, read_frames_decord, rgb_converter
from bench.data.listfile import DatasetIndex, VideoEntry
from bench.data.sampling import sample_indices
from tests.video_matrix import CASES, Case, write_case

K400 = ClipSpec()  # 8 frames 16 apart; 3 temporal views at test
SSV2 = ClipSpec(sampling="uniform", augment="ssv2", test_crops=3, test_clips=1)
TRAIN_DRAWS = 3
READS = [(name, spec, train, seed) for name, spec in (("k400", K400), ("ssv2", SSV2))
         for train, seeds in ((True, range(TRAIN_DRAWS)), (False, range(1))) for seed in seeds]


def loader_read(path: Path, spec: ClipSpec, train: bool, seed: int) -> tuple[np.ndarray, VideoDataset]:
    """The frames the loader hands on for sample 0 of a one-video list (uint8, (views, T, H, W, 3)),
    and the dataset (whose ``sample_rng(0)`` replays the draw)."""
    index = DatasetIndex([VideoEntry(path, 0)], ["class"], path.parent, path)
    dataset = VideoDataset("list", "train" if train else "val", index, spec, train, seed=seed,
                           device_transforms=True)
    item = dataset[0]
    assert not item["replaced"], f"the loader called {path.name} broken: {dataset.broken.errors}"
    assert not item["fallback"], f"the loader's reader failed on {path.name}: {dataset.fallbacks.errors}"
    return item["frames"].numpy(), dataset


_truth: dict[Path, np.ndarray] = {}


def true_frames(path: Path) -> np.ndarray:
    """Every frame the video shows, in display order, decoded front to back with nothing skipped."""
    if path not in _truth:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.codec_context.thread_count = 1
            to_rgb = rgb_converter()
            frames = sorted(((frame.pts, to_rgb(frame)) for frame in container.decode(stream)), key=lambda f: f[0])
        _truth[path] = np.stack([image for _, image in frames])
    return _truth[path]


def decord_read(path: Path, dataset: VideoDataset) -> tuple[np.ndarray, np.ndarray]:
    """decord's frames for the same draw, sampled over the frame count decord sees."""
    rng = dataset.sample_rng(0)
    return read_frames_decord(path, lambda count: sample_indices(dataset.clip, count, dataset.train, rng))


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_loader_reads_every_encoding_as_decord_does(case: Case, tmp_path):
    path = write_case(case, tmp_path / f"{case.id}.{case.suffix}")
    deviations = []
    for name, spec, train, seed in READS:
        what = f"{name} {'training draw ' + str(seed) if train else 'test views'}"
        ours, dataset = loader_read(path, spec, train, seed)
        if case.decord is None:
            theirs, indices = decord_read(path, dataset)
            assert ours.shape == theirs.shape, f"{what}: shape {ours.shape}, decord {theirs.shape}"
            differ = int((ours != theirs).any(axis=(-3, -2, -1)).sum())
            assert not differ, f"{what}: {differ} of {indices.size} frames differ from decord's ({indices.tolist()})"
            continue
        truth = true_frames(path)
        indices = sample_indices(spec, len(truth), train, dataset.sample_rng(0))
        expected = truth[indices]
        assert ours.shape == expected.shape and np.array_equal(ours, expected), f"{what}: not the true frames"
        try:
            theirs, their_indices = decord_read(path, dataset)
            deviations.append(not (np.array_equal(their_indices, indices) and np.array_equal(theirs, expected)))
        except VideoDecodeError:
            deviations.append("fails")
    if case.decord is not None:
        kind = case.decord.split(":")[0]
        expected = ["fails"] * len(deviations) if kind == "fails" else None
        assert (deviations == expected) if expected else (True in deviations and "fails" not in deviations), (
            f"decord no longer behaves as noted ({case.decord!r}): {deviations}; update the case")
