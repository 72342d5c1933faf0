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


def test_video_cls_must_be_a_bool():
    with pytest.raises(MethodConfigError, match=r"temporal_attention: option video_cls=1 is invalid: "
                                                 r"expected true \(one CLS per video"):
        build_model("temporal_attention", TINY, 5, 4, random_init=True, method_options={"video_cls": 1})




def test_video_cls_attention_averages_the_cls_update_over_the_clip():
    from methods.backbone import Branch
    from methods.temporal_attention import VideoClsAttention
    enc = tiny_model("linear_probe").encoder
    branch = Branch(enc.blocks[0].norm1, enc.blocks[0].attn)
    x = torch.randn(2 * 3, 17, 64)
    with torch.no_grad():
        plain, video_cls = branch(x), VideoClsAttention(1)(x, 3, branch)
    torch.testing.assert_close(video_cls[:, 1:], plain[:, 1:], rtol=0, atol=0)
    expected = plain[:, 0].view(2, 3, 64).mean(1).repeat_interleave(3, dim=0)
    torch.testing.assert_close(video_cls[:, 0], expected, rtol=0, atol=0)


@pytest.mark.parametrize("num_layers", [None, 2])
def test_video_cls_is_one_token_per_clip(num_layers):
    model = tiny_model("temporal_attention", video_cls=True, num_layers=num_layers).eval()
    assert not model.method_config.starts_as_image_model and model.method_config.frames_interact
    clip = video()
    frames = clip.transpose(1, 2).flatten(0, 1)
    with torch.no_grad():
        cls = model.encoder(frames, 4).view(2, 4, -1)
    torch.testing.assert_close(cls, cls[:, :1].expand(-1, 4, -1), rtol=0, atol=1e-6)
    assert not torch.allclose(cls[0, 0], cls[1, 0])
    per_frame = tiny_model("temporal_attention", num_layers=num_layers).eval()
    with torch.no_grad():
        cls = per_frame.encoder(frames, 4).view(2, 4, -1)
    assert not torch.allclose(cls[:, 0], cls[:, 1])  # the default keeps a CLS per frame
