"""Recipe transforms: one draw shared by all frames, timm RandAugment replayed per frame, no flip for SSv2."""
import dataclasses

import numpy as np
import pytest
import torch

from bench.data import CLIP_MEAN, CLIP_STD, ClipSpec, ClipSpecError
from bench.data.transforms import ClipTransform, apply_to_every_frame

K400 = ClipSpec(num_frames=4, input_size=32, short_side_range=(32, 40), test_crops=3)
SSV2 = ClipSpec(num_frames=4, sampling="uniform", input_size=32, augment="ssv2", short_side_range=(32, 40))


def left_red_clip(frames: int = 4, height: int = 40, width: int = 56) -> np.ndarray:
    """Left half red, right half blue, with a vertical gradient so crops and rotations change pixels."""
    clip = np.zeros((1, frames, height, width, 3), np.uint8)
    clip[..., : width // 2, 0] = 220
    clip[..., width // 2:, 2] = 220
    clip[..., 1] = np.linspace(0, 200, height, dtype=np.uint8)[:, None]
    return clip


def red_left_minus_right(video: torch.Tensor) -> float:
    red = video[0]  # (T, H, W), normalised
    return float(red[..., : red.shape[-1] // 3].mean() - red[..., -red.shape[-1] // 3:].mean())


@pytest.mark.parametrize("spec", [K400, SSV2], ids=["k400", "ssv2"])
def test_one_draw_shared_by_every_frame(spec):
    transform = ClipTransform(spec, train=True)
    for seed in range(8):
        video = transform(left_red_clip(), np.random.default_rng(seed))
        assert video.shape == (3, 4, 32, 32)
        assert all(torch.equal(video[:, 0], video[:, t]) for t in range(1, 4))  # identical frames stay identical


def test_same_seed_same_clip():
    transform = ClipTransform(SSV2, train=True)
    first = transform(left_red_clip(), np.random.default_rng(5))
    assert torch.equal(first, transform(left_red_clip(), np.random.default_rng(5)))
    assert not torch.equal(first, transform(left_red_clip(), np.random.default_rng(6)))


def test_randaugment_replayed_identically_on_different_frames():
    from PIL import Image

    op = ClipTransform(SSV2, train=True).rand_augment
    frames = [Image.fromarray(np.random.default_rng(i).integers(0, 255, (32, 32, 3), dtype=np.uint8))
              for i in range(3)]
    together = apply_to_every_frame(op, frames, seed=11)
    alone = [apply_to_every_frame(op, [frame], seed=11)[0] for frame in frames]
    assert all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(together, alone))
    state = np.random.get_state()[1].copy()
    apply_to_every_frame(op, frames, seed=3)
    assert np.array_equal(state, np.random.get_state()[1])  # the global generators are restored


def test_k400_flips_and_ssv2_never_does():
    """SSv2 geometry without RandAugment's colour ops (Invert would swap which side is red)."""
    k400 = ClipTransform(K400, train=True)
    ssv2 = ClipTransform(dataclasses.replace(SSV2, rand_augment="rand-m7-n0"), train=True)
    k400_signs = [red_left_minus_right(k400(left_red_clip(), np.random.default_rng(s))) > 0 for s in range(24)]
    assert 0 < sum(k400_signs) < 24
    assert all(red_left_minus_right(ssv2(left_red_clip(), np.random.default_rng(s))) > -0.05 for s in range(24))


def test_test_views_three_crops_along_long_side_and_clip_normalisation():
    clip = np.zeros((2, 4, 32, 96, 3), np.uint8)
    clip[..., 0] = np.linspace(0, 250, 96, dtype=np.uint8)
    clip[1, ..., 1] = 128
    views = ClipTransform(K400, train=False)(clip)
    assert views.shape == (6, 3, 4, 32, 32)  # 2 temporal views x 3 crops, temporal view major
    red = views[:3, 0].mean(dim=(1, 2, 3))
    assert red[0] < red[1] < red[2]
    expected_green = (128 / 255 - CLIP_MEAN[1]) / CLIP_STD[1]
    assert torch.allclose(views[3:, 1], torch.full_like(views[3:, 1], expected_green), atol=1e-5)


def test_clip_spec_validation_names_the_field():
    with pytest.raises(ClipSpecError, match="short_side_range"):
        ClipSpec(input_size=256)  # larger than the short side it is cropped from
    with pytest.raises(ClipSpecError, match="sampling"):
        ClipSpec(sampling="random")
    with pytest.raises(ClipSpecError, match="test_crops"):
        ClipSpec(test_crops=2)
