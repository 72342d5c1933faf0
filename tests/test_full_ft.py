"""full_ft: the whole encoder and the head train (DESIGN.md section 3 counts)."""
from __future__ import annotations

import pytest

from tests.method_helpers import HEAD, clip_b16_trainable, tiny_model


@pytest.mark.parametrize("num_classes,expected", [(400, 86_107_024), (174, 85_933_230)])
def test_trainable_count_on_clip_vit_b16(num_classes, expected):
    assert clip_b16_trainable("full_ft", {}, num_classes) == expected


def test_trainable_set_is_backbone_and_head():
    model = tiny_model("full_ft")
    backbone = {f"encoder.{k}" for k in model.encoder.backbone_state_keys()}
    assert {n for n, _ in model.trainable_named_parameters()} == HEAD | backbone
