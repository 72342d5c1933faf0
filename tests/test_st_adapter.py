"""st_adapter: DESIGN.md section 2 and 3 (counts, placement, init), its temporal conv against
nn.Conv3d, the CLS token left alone, and its option errors."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from methods import MethodConfigError, build_model, make_method_config
from methods.temporal_conv import TemporalDepthwiseConv, temporal_depthwise_conv
from tests.method_helpers import HEAD, TINY, clip_b16_trainable, randomise_trainable, tiny_model, video


@pytest.mark.parametrize("num_classes", [400, 174])
@pytest.mark.parametrize("options,k400,ssv2", [
    ({"preset": "12x384"}, 7_417_744, 7_243_950),
    ({"preset": "24x384"}, 14_527_888, 14_354_094),
    ({"preset": "12x384_k1"}, 7_408_528, 7_234_734),  # the paper's kernel-size ablation
])
def test_trainable_count_on_clip_vit_b16(options, k400, ssv2, num_classes):
    assert clip_b16_trainable("st_adapter", options, num_classes) == (k400 if num_classes == 400 else ssv2)


def test_one_clip_vit_b16_adapter_matches_design():
    with torch.device("meta"):
        model = build_model("st_adapter", "clip_vit_b16", 400, 8, random_init=True)
    assert sum(p.numel() for p in model.encoder.pre_mlp[0].parameters()) == 592_512
    assert model.encoder.pre_mlp[0].conv.weight.shape == (384, 1, 3, 1, 1)


@pytest.mark.parametrize("options", [{}, {"preset": "24x384", "width": 16}])
def test_identity_at_init_in_other_placements(options):
    torch.manual_seed(0)
    probe = tiny_model("linear_probe").eval()
    model = build_model("st_adapter", TINY, 5, 4, random_init=True, method_options=options).eval()
    model.load_state_dict(probe.state_dict(), strict=False)
    with torch.no_grad():
        assert torch.equal(model(video()), probe(video()))


def test_declares_that_its_frames_interact():
    """So test_methods.test_frame_order_as_declared requires its logits to change with reversed frames."""
    assert make_method_config("st_adapter").frames_interact


def test_kernel_ablation_is_per_frame_and_not_the_plain_adapter():
    """Preset 12x384_k1: ST-Adapter with a (1,1,1) kernel is frame-order blind and starts as the image
    model; unlike the plain adapter it has no activation and a zero-initialised conv."""
    config = make_method_config("st_adapter", preset="12x384_k1")
    assert config.kernel_size == 1 and not config.frames_interact and config.starts_as_image_model
    model = tiny_model("st_adapter", preset="12x384_k1", width=16).double().eval()
    adapter = model.encoder.pre_mlp[0]
    assert isinstance(adapter.act, nn.Identity) and not adapter.conv.weight.any()
    randomise_trainable(model, torch.Generator().manual_seed(1))
    clip = video(dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(model(clip.flip(2)), model(clip), rtol=0, atol=1e-10)


def test_trainable_set_is_adapters_and_head():
    model = tiny_model("st_adapter")
    names = {n for n, _ in model.trainable_named_parameters()}
    assert names <= model.added_state_keys() and HEAD <= names
    assert all(n in HEAD or n.startswith(("encoder.pre_attn.", "encoder.pre_mlp.")) for n in names)


def test_placement_and_init():
    model = tiny_model("st_adapter", positions="pre_mlp", num_layers=2)
    enc = model.encoder
    adapted = [i for i, slot in enumerate(enc.pre_mlp) if not isinstance(slot, nn.Identity)]
    assert adapted == [2, 3] and all(isinstance(s, nn.Identity) for s in enc.pre_attn)
    adapter = enc.pre_mlp[3]
    for zero in (adapter.conv.weight, adapter.conv.bias, adapter.fc1.bias, adapter.fc2.bias):
        assert not zero.any()
    assert adapter.fc1.weight.abs().sum() > 0 and adapter.fc2.weight.abs().sum() > 0
    assert isinstance(adapter.act, nn.Identity)


def test_leaves_cls_token_untouched():
    model = tiny_model("st_adapter")
    randomise_trainable(model, torch.Generator().manual_seed(0))
    adapter = model.encoder.pre_attn[0]
    x = torch.randn(6, 17, 64)
    out = adapter(x, 3)
    assert torch.equal(out[:, 0], x[:, 0]) and not torch.equal(out[:, 1:], x[:, 1:])


@pytest.mark.parametrize("kernel_size", [1, 3, 5])
@pytest.mark.parametrize("num_frames", [1, 2, 8])
def test_temporal_conv_equals_conv3d(kernel_size, num_frames):
    g = torch.Generator().manual_seed(kernel_size * 10 + num_frames)
    channels, height, width, batch = 6, 2, 3, 2
    conv3d = nn.Conv3d(channels, channels, (kernel_size, 1, 1), padding=(kernel_size // 2, 0, 0),
                       groups=channels).double()
    with torch.no_grad():
        conv3d.weight.copy_(torch.randn(conv3d.weight.shape, generator=g, dtype=torch.float64))
        conv3d.bias.copy_(torch.randn(channels, generator=g, dtype=torch.float64))
    x = torch.randn(batch, channels, num_frames, height, width, generator=g, dtype=torch.float64)
    reference = conv3d(x)

    # the function on channels-last [B, T, H, W, C]
    out = temporal_depthwise_conv(x.permute(0, 2, 3, 4, 1), conv3d.weight, conv3d.bias)
    torch.testing.assert_close(out.permute(0, 4, 1, 2, 3), reference, rtol=0, atol=1e-10)

    # the module on tokens [B*T, L, C], loading Conv3d's state dict unchanged
    module = TemporalDepthwiseConv(channels, kernel_size).double()
    module.load_state_dict(conv3d.state_dict())
    tokens = x.permute(0, 2, 3, 4, 1).reshape(batch * num_frames, height * width, channels)
    out = module(tokens, num_frames).view(batch, num_frames, height, width, channels)
    torch.testing.assert_close(out.permute(0, 4, 1, 2, 3), reference, rtol=0, atol=1e-10)


def test_temporal_conv_gradients_match_conv3d():
    g = torch.Generator().manual_seed(3)
    conv3d = nn.Conv3d(4, 4, (3, 1, 1), padding=(1, 0, 0), groups=4).double()
    x = torch.randn(2, 4, 5, 1, 3, generator=g, dtype=torch.float64, requires_grad=True)
    conv3d(x).square().sum().backward()
    expected = (x.grad.clone(), conv3d.weight.grad.clone(), conv3d.bias.grad.clone())
    x.grad, conv3d.weight.grad, conv3d.bias.grad = None, None, None
    temporal_depthwise_conv(x.permute(0, 2, 3, 4, 1), conv3d.weight, conv3d.bias).square().sum().backward()
    for got, want in zip((x.grad, conv3d.weight.grad, conv3d.bias.grad), expected):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-10)


@pytest.mark.parametrize("options,message", [
    ({"kernel_size": 4}, r"st_adapter: option kernel_size=4 is invalid: expected an odd"),
    ({"kernel_size": (3, 3, 3)}, r"kernel_size=\(3, 3, 3\) is invalid"),
    ({"kernel_size": None}, r"kernel_size=None is invalid: ST-Adapter needs its temporal conv"),
    ({"width": 0}, r"st_adapter: option width=0 is invalid: expected an int >= 1"),
    ({"positions": ("pre_ffn",)}, r"option positions=\('pre_ffn',\) is invalid"),
])
def test_invalid_options(options, message):
    with pytest.raises(MethodConfigError, match=message):
        make_method_config("st_adapter", **options)


