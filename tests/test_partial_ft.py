"""partial_ft: the last k blocks, the final LN and the head train (DESIGN.md section 3 counts)."""
from __future__ import annotations

import pytest

from methods import MethodConfigError, build_model, make_method_config
from tests.method_helpers import HEAD, TINY, clip_b16_trainable, tiny_model


@pytest.mark.parametrize("num_classes,expected", [(400, 7_397_008), (174, 7_223_214)])
def test_trainable_count_on_clip_vit_b16(num_classes, expected):
    assert clip_b16_trainable("partial_ft", {"num_blocks": 1}, num_classes) == expected


def test_trainable_set_is_the_last_blocks_final_norm_and_head():
    names = {n for n, _ in tiny_model("partial_ft", num_blocks=2).trainable_named_parameters()}
    assert {n.split(".")[2] for n in names if n.startswith("encoder.blocks.")} == {"2", "3"}
    assert {n for n in names if not n.startswith("encoder.blocks.")} == HEAD | {
        "encoder.norm.weight", "encoder.norm.bias"}


def test_invalid_options():
    with pytest.raises(MethodConfigError, match=r"partial_ft: option num_blocks=0 is invalid"):
        make_method_config("partial_ft", num_blocks=0)
    with pytest.raises(MethodConfigError, match=r"partial_ft: option num_blocks=5 is invalid: backbone "
                                                 r"'vit_tiny_test' has only 4 blocks"):
        build_model("partial_ft", TINY, 5, 4, random_init=True, method_options={"num_blocks": 5})
