"""temporal_attention: TimeSformer-style divided attention (DESIGN.md section 3 counts), initialised
from the spatial attention, built for a fixed number of frames."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from methods import MethodConfigError, build_model
from tests.method_helpers import HEAD, TINY, clip_b16_trainable, tiny_model, video


@pytest.mark.parametrize("num_classes,expected", [(400, 35_767_696), (174, 35_593_902)])
def test_trainable_count_on_clip_vit_b16(num_classes, expected):
    assert clip_b16_trainable("temporal_attention", {}, num_classes) == expected


def test_starts_from_the_spatial_attention():
    model = tiny_model("temporal_attention", num_layers=3)
    enc = model.encoder
    assert isinstance(enc.pre_attn[0], nn.Identity)
    chain = enc.pre_attn[1]
    embedding, branch = chain[0], chain[1]
    assert embedding.time_embed.shape == (1, 4, 64) and not embedding.time_embed.any()
    for name, param in enc.blocks[1].attn.named_parameters():
        assert torch.equal(dict(branch.temporal_attn.named_parameters())[name], param)
        assert dict(branch.temporal_attn.named_parameters())[name] is not param
    assert torch.equal(branch.temporal_norm.weight, enc.blocks[1].norm1.weight)
    assert not branch.temporal_fc.weight.any() and not branch.temporal_fc.bias.any()
    with pytest.raises(ValueError, match="built for 4 frames but got clips of 6"):
        model(video(frames=6))


def test_trainable_set_is_temporal_parts_and_head():
    model = tiny_model("temporal_attention")
    names = {n for n, _ in model.trainable_named_parameters()}
    assert names <= model.added_state_keys() and HEAD <= names


def test_more_layers_than_blocks():
    with pytest.raises(MethodConfigError, match=r"temporal_attention: option num_layers=5 is invalid: "
                                                 r"backbone 'vit_tiny_test' has only 4 blocks"):
        build_model("temporal_attention", TINY, 5, 4, random_init=True, method_options={"num_layers": 5})
