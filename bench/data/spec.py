"""ClipSpec: how clips are sampled, augmented and viewed at test time (part of the matched recipe)."""
from __future__ import annotations

from dataclasses import dataclass

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
SAMPLINGS = ("dense", "uniform")
AUGMENTS = ("k400", "ssv2", "none")


class ClipSpecError(ValueError):
    """A ClipSpec field with an impossible value."""


@dataclass(frozen=True)
class ClipSpec:
    """Temporal sampling, train augmentation and test views of one recipe.

    ``dense``: ``num_frames`` frames ``stride`` decoded frames apart from a random start (K400).
    ``uniform``: one frame per equal segment, random in training, the midpoint at test (SSv2).
    At test a sample holds ``test_clips`` temporal views x ``test_crops`` spatial crops.
    """

    num_frames: int = 8
    sampling: str = "dense"
    stride: int = 16
    input_size: int = 224
    augment: str = "k400"
    short_side_range: tuple[int, int] = (224, 258)
    test_clips: int = 3
    test_crops: int = 1
    mean: tuple[float, float, float] = CLIP_MEAN
    std: tuple[float, float, float] = CLIP_STD
    rand_augment: str = "rand-m7-n4-mstd0.5-inc1"
    crop_scale: tuple[float, float] = (0.08, 1.0)

    def __post_init__(self) -> None:
        def fail(field: str, problem: str) -> None:
            raise ClipSpecError(f"ClipSpec.{field}: {problem}")

        if self.sampling not in SAMPLINGS:
            fail("sampling", f"{self.sampling!r} is not one of {SAMPLINGS}")
        if self.augment not in AUGMENTS:
            fail("augment", f"{self.augment!r} is not one of {AUGMENTS}")
        for name in ("num_frames", "stride", "input_size", "test_clips"):
            if int(getattr(self, name)) < 1:
                fail(name, f"must be >= 1, got {getattr(self, name)}")
        if self.test_crops not in (1, 3):
            fail("test_crops", f"must be 1 (centre) or 3 (three crops along the long side), got {self.test_crops}")
        low, high = self.short_side_range
        if not self.input_size <= low <= high:
            fail("short_side_range", f"{self.short_side_range} must satisfy input_size ({self.input_size}) "
                 "<= low <= high; scale it with input_size (e.g. (32, 37) for 32 px)")
        if not 0 < self.crop_scale[0] <= self.crop_scale[1] <= 1:
            fail("crop_scale", f"{self.crop_scale} must satisfy 0 < low <= high <= 1")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            fail("mean/std", "need three channel values each, std > 0")
        if not self.rand_augment.startswith("rand-"):
            fail("rand_augment", f"{self.rand_augment!r} is not a timm RandAugment string like 'rand-m7-n4-mstd0.5-inc1'")

    @property
    def views(self) -> int:
        """Number of views per test sample (temporal clips x spatial crops)."""
        return self.test_clips * self.test_crops
