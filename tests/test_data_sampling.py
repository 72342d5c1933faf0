"""Exact frame indices of the dense and uniform samplers, and proof that decoding returns those frames."""
import av
import numpy as np
import pytest

from bench.data import ClipSpec, build_dataset
from bench.data.decode import read_frames
from bench.data.prepare import EncodeSettings, reencode
from bench.data.sampling import (
    dense_test_indices,
    dense_train_indices,
    sample_indices,
    uniform_test_indices,
    uniform_train_indices,
)
from bench.data.synthetic import write_video


class FixedDraws:
    """Stands in for a numpy Generator: records the bounds asked for and answers the lowest or highest value."""

    def __init__(self, highest: bool):
        self.highest, self.calls = highest, []

    def integers(self, low, high):
        self.calls.append((low, np.array(high).tolist()))
        return np.asarray(high) - 1 if self.highest else np.zeros_like(np.asarray(high))


def test_dense_train_start_range_and_stride():
    draws = FixedDraws(highest=True)
    assert dense_train_indices(100, 8, 4, draws).tolist() == [71, 75, 79, 83, 87, 91, 95, 99]
    assert draws.calls == [(0, 72)]  # 100 frames - span 29 = 71 -> starts 0..71
    assert dense_train_indices(100, 8, 4, FixedDraws(highest=False)).tolist() == [0, 4, 8, 12, 16, 20, 24, 28]


def test_dense_short_video_repeats_last_frame():
    assert dense_train_indices(20, 8, 4, FixedDraws(highest=True)).tolist() == [0, 4, 8, 12, 16, 19, 19, 19]


def test_dense_test_views_spread_start_to_end():
    views = dense_test_indices(300, 8, 16, 3)
    assert views[:, 0].tolist() == [0, 93, 187] and views[2, -1] == 299
    assert views[1].tolist() == [93, 109, 125, 141, 157, 173, 189, 205]
    assert dense_test_indices(300, 8, 16, 1)[0, 0] == 93


def test_uniform_train_one_frame_per_segment():
    assert uniform_train_indices(20, 8, FixedDraws(highest=True)).tolist() == [1, 4, 6, 9, 11, 14, 16, 19]
    assert uniform_train_indices(20, 8, FixedDraws(highest=False)).tolist() == [0, 2, 5, 7, 10, 12, 15, 17]


def test_uniform_test_midpoints_and_short_videos():
    assert uniform_test_indices(300, 8, 1)[0].tolist() == [18, 56, 93, 131, 168, 206, 243, 281]
    assert uniform_test_indices(5, 8, 1)[0].tolist() == [0, 0, 1, 2, 2, 3, 4, 4]  # floor((2i+1)*5/16)
    assert uniform_test_indices(16, 4, 2).tolist() == [[1, 5, 9, 13], [3, 7, 11, 15]]


def test_training_indices_need_a_generator():
    with pytest.raises(ValueError, match="Generator"):
        sample_indices(ClipSpec(), 100, train=True)


@pytest.fixture(scope="module")
def painted(tmp_path_factory):
    """64 frames, frame k painted 3k + 10, encoded with x264's defaults (B-frames, one keyframe)."""
    root = tmp_path_factory.mktemp("painted")
    clip = np.stack([np.full((32, 40, 3), 3 * k + 10, np.uint8) for k in range(64)])
    write_video(root / "painted.mp4", clip, 25, pix_fmt="yuv420p", options={})
    (root / "train.txt").write_text("painted.mp4 0\n")
    (root / "val.txt").write_text("painted.mp4 0\n")
    return root


def frame_numbers(frames: np.ndarray) -> np.ndarray:
    return np.round((frames.reshape(*frames.shape[:-3], -1).mean(-1) - 10) / 3).astype(int)


def test_decoded_frames_are_the_sampled_indices(painted):
    wanted = np.array([[63, 0, 17, 17, 40, 5]])
    frames, indices = read_frames(painted / "painted.mp4", lambda count: wanted)
    assert frames.shape == (1, 6, 32, 40, 3) and frame_numbers(frames).tolist() == wanted.tolist()


@pytest.mark.parametrize("sampling", ["dense", "uniform"])
def test_dataset_clips_hold_the_sampled_frames(painted, sampling):
    """Through the dataset (augment none, identity normalisation) in train and test mode."""
    spec = dict(num_frames=8, sampling=sampling, stride=4, input_size=32, augment="none",
                short_side_range=(32, 32), test_clips=3, mean=(0, 0, 0), std=(1, 1, 1))
    train = build_dataset("list", "train", ClipSpec(**spec), True, painted, seed=3)
    for epoch in (0, 1):
        train.set_epoch(epoch)
        clip = train[0]["video"].permute(1, 2, 3, 0).numpy() * 255  # (T, H, W, 3)
        expected = sample_indices(train.clip, 64, True, train.sample_rng(0))
        assert frame_numbers(clip[None]).tolist() == expected.tolist()
    test = build_dataset("list", "val", ClipSpec(**spec), False, painted)
    views = test[0]["video"].permute(0, 2, 3, 4, 1).numpy() * 255  # (V, T, H, W, 3)
    expected = {"dense": [0, 17, 35], "uniform": [1, 4, 6]}[sampling]  # first frame of each temporal view
    assert frame_numbers(views)[:, 0].tolist() == expected
    assert frame_numbers(views).tolist() == sample_indices(test.clip, 64, False).tolist()


def test_prepared_copy_keeps_the_frame_indices(painted, tmp_path):
    """The default prepared copy is all-intra and decodes to the same frame numbers as the original."""
    assert reencode(painted / "painted.mp4", tmp_path / "prepared.mp4", EncodeSettings()) == 64
    with av.open(str(tmp_path / "prepared.mp4")) as container:
        keyframes = [packet.is_keyframe for packet in container.demux(video=0) if packet.size]
    assert len(keyframes) == 64 and all(keyframes)
    wanted = np.array([[63, 0, 17, 17, 40, 5]])
    frames, _ = read_frames(tmp_path / "prepared.mp4", lambda count: wanted)
    assert frame_numbers(frames).tolist() == wanted.tolist()
