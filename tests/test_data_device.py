"""Device-side transforms equal the loader's CPU path on the same draws; the PyAV reader equals decord;
the real-format fixtures read back through the real readers."""
import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image
from timm.data.auto_augment import NAME_TO_OP

from bench.data import ClipSpec
from bench.data.decode import read_frames_pyav
from bench.data.fixtures import ClipFormat, FixtureConfig, ensure_fixture, scene
from bench.data.gpu_augment import apply_rand_augment, rand_augment_ops
from bench.data.gpu_transforms import DeviceClipTransform, collate_frames, pack_draw
from bench.data.kinetics import read_kinetics
from bench.data.prepare import EncodeSettings
from bench.data.ssv2 import read_ssv2
from bench.data.transforms import ClipTransform

K400 = ClipSpec(num_frames=4, input_size=32, short_side_range=(32, 40), test_clips=2)
SSV2 = ClipSpec(num_frames=4, sampling="uniform", input_size=32, augment="ssv2", test_clips=1, test_crops=3)
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)]


def natural(views: int, frames: int, height: int, width: int, seed: int) -> np.ndarray:
    """(views, T, H, W, 3) uint8: a drifting detailed scene with grain (flat frames would hide rounding)."""
    rng = np.random.default_rng(seed)
    world = scene(height + frames, width + frames, rng)
    return np.stack([np.stack([np.clip(world[t:t + height, t:t + width] + rng.normal(0, 6, (height, width, 1)),
                                       0, 255).astype(np.uint8) for t in range(frames)]) for _ in range(views)])


@pytest.mark.parametrize("device", DEVICES)
def test_every_rand_augment_op_matches_pillow(device):
    clip = natural(1, 2, 30, 44, 0)[0]
    cpu = ClipTransform(SSV2, train=True)
    fill = DeviceClipTransform(SSV2, train=True).fill
    seen = set()
    for seed in range(120):
        for name, args in rand_augment_ops(cpu.rand_augment, seed):
            seen.add(name)
            pil = np.stack([np.asarray(NAME_TO_OP[name](Image.fromarray(f), *args, fillcolor=fill,
                                                        resample=Image.BICUBIC)) for f in clip])
            x = torch.from_numpy(clip).to(device).permute(0, 3, 1, 2).float()[None]
            ours = apply_rand_augment(x, [list(clip.shape[1:3])], [[(name, args)]], fill)
            ours = ours[0].permute(0, 2, 3, 1).cpu().numpy()
            assert np.array_equal(ours, pil), (name, args)
    assert len(seen) == 15  # the whole 'inc1' set was exercised


def test_recorded_ops_are_what_timm_applies():
    """Replaying the recorded ops with Pillow gives exactly apply_to_every_frame's output."""
    from bench.data.transforms import apply_to_every_frame
    cpu = ClipTransform(SSV2, train=True)
    fill = DeviceClipTransform(SSV2, train=True).fill
    frame = Image.fromarray(natural(1, 1, 24, 30, 1)[0, 0])
    for seed in range(20):
        replayed = frame
        for name, args in rand_augment_ops(cpu.rand_augment, seed):
            replayed = NAME_TO_OP[name](replayed, *args, fillcolor=fill, resample=Image.BICUBIC)
        assert np.array_equal(np.asarray(replayed), np.asarray(apply_to_every_frame(cpu.rand_augment, [frame], seed)[0]))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("spec", [K400, SSV2], ids=["k400", "ssv2"])
@pytest.mark.parametrize("train", [True, False], ids=["train", "test"])
def test_device_transform_equals_the_cpu_path(spec, train, device):
    """Same crop box, flip, RandAugment ops and magnitudes -> the same normalised clip (up to float rounding)."""
    cpu, dev = ClipTransform(spec, train), DeviceClipTransform(spec, train)
    views = 1 if train else spec.test_clips
    samples, expected = [], []
    for seed in range(10):
        height, width = (45, 60) if seed % 2 else (52, 41)  # mixed sizes and orientations in one batch
        clip = natural(views, spec.num_frames, height, width, seed)
        expected.append(cpu(clip, np.random.default_rng(seed)))
        sample = {"frames": torch.from_numpy(clip), "label": seed}
        if train:
            sample["draw"] = pack_draw(cpu.draw(height, width, np.random.default_rng(seed)))
        samples.append(sample)
    batch = collate_frames(samples)
    out = dev({**batch, "frames": batch["frames"].to(device)}).cpu()
    torch.testing.assert_close(out, torch.stack(expected), rtol=0, atol=1e-5)


def test_collate_pads_to_the_largest_clip_and_keeps_sizes():
    a, b = torch.ones(1, 2, 5, 7, 3, dtype=torch.uint8), torch.full((1, 2, 6, 4, 3), 2, dtype=torch.uint8)
    batch = collate_frames([{"frames": a, "label": 0}, {"frames": b, "label": 1}])
    assert batch["frames"].shape == (2, 1, 2, 6, 7, 3) and batch["sizes"].tolist() == [[5, 7], [6, 4]]
    assert torch.equal(batch["frames"][1, ..., :6, :4, :], b) and batch["label"].tolist() == [0, 1]


def test_fixtures_are_read_by_the_real_readers(tmp_path):
    small = ClipFormat(width=64, height=48, fps=10, seconds=(1, 2))
    k400 = ensure_fixture(FixtureConfig("k400", 5, 2, classes=3, fmt=small, distinct=3), tmp_path, workers=1)
    train = read_kinetics("train", k400)
    assert len(train.entries) == 5 and not train.missing and train.class_names == sorted(train.class_names)
    assert train.entries[3].path.stat().st_ino == train.entries[0].path.stat().st_ino  # a hard link
    prepared = ensure_fixture(FixtureConfig("k400", 2, 1, fmt=small, distinct=1,
                                            prepared=EncodeSettings(short_side=32)), tmp_path, workers=1)
    frames, _ = read_frames_pyav(read_kinetics("val", prepared).entries[0].path, lambda n: np.arange(n))
    assert frames.shape[1:] == (32, 42, 3)
    vp9 = dataclasses.replace(small, codec="libvpx-vp9", container="webm", options=(("cpu-used", "8"),))
    ssv2 = ensure_fixture(FixtureConfig("ssv2", 3, 2, classes=2, fmt=vp9), tmp_path, workers=1)
    val = read_ssv2("val", ssv2)
    assert len(val.entries) == 2 and not val.missing and len(val.class_names) == 2
    assert ensure_fixture(FixtureConfig("ssv2", 3, 2, classes=2, fmt=vp9), tmp_path) == ssv2  # cached


def test_triton_affine_warp_equals_the_pytorch_one_in_the_interpreter():
    """Run in a subprocess: TRITON_INTERPRET must be set before Triton compiles anything."""
    pytest.importorskip("triton")
    import subprocess
    import sys
    from pathlib import Path
    script = Path(__file__).with_name("affine_interpret_check.py")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.gpu
def test_triton_affine_warp_equals_the_pytorch_one_on_cuda():
    from bench.data.affine_kernel import affine_triton
    from bench.data.gpu_augment import affine, affine_matrix
    rng = np.random.default_rng(3)
    x = torch.from_numpy(natural(3, 8, 60, 90, 5)).permute(0, 1, 4, 2, 3).float().cuda()
    sizes = torch.tensor([[60, 90], [57, 85], [60, 88]], device="cuda")
    ops = [("Rotate", (float(rng.uniform(-30, 30)),)), ("ShearY", (float(rng.uniform(-.3, .3)),)),
           ("TranslateXRel", (float(rng.uniform(-.45, .45)),))]
    matrices = torch.tensor([affine_matrix(*op, *s) for op, s in zip(ops, sizes.tolist())], dtype=torch.float64,
                            device="cuda")
    want, got = affine(x, sizes, matrices, (123, 117, 104)), affine_triton(x, sizes, matrices, (123, 117, 104))
    assert torch.equal(want, got)
