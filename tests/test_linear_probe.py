"""linear_probe: the head alone trains (DESIGN.md section 3 counts)."""
from __future__ import annotations

import pytest

from tests.method_helpers import HEAD, clip_b16_trainable, tiny_model


@pytest.mark.parametrize("num_classes,expected", [(400, 307_600), (174, 133_806)])
def test_trainable_count_on_clip_vit_b16(num_classes, expected):
    assert clip_b16_trainable("linear_probe", {}, num_classes) == expected


def test_trainable_set_is_the_head():
    assert {n for n, _ in tiny_model("linear_probe").trainable_named_parameters()} == HEAD
