"""adapter: the plain GELU bottleneck (DESIGN.md section 3 counts), frame-order blind."""
from __future__ import annotations

import pytest
import torch

from methods import MethodConfigError, make_method_config
from tests.method_helpers import HEAD, clip_b16_trainable, tiny_model, video


@pytest.mark.parametrize("num_classes", [400, 174])
@pytest.mark.parametrize("options,k400,ssv2", [
    ({"preset": "12x384", "kernel_size": 1}, 7_408_528, 7_234_734),
    ({"preset": "12x384_k1"}, 7_408_528, 7_234_734),
    ({"preset": "12x384"}, 7_399_312, 7_225_518),
])
def test_trainable_count_on_clip_vit_b16(options, k400, ssv2, num_classes):
    assert clip_b16_trainable("adapter", options, num_classes) == (k400 if num_classes == 400 else ssv2)


def test_is_a_gelu_bottleneck_with_zero_up_projection():
    adapter = tiny_model("adapter", width=16).encoder.pre_mlp[0]
    assert adapter.conv is None and isinstance(adapter.act, torch.nn.GELU)
    assert not adapter.fc2.weight.any() and not adapter.fc2.bias.any()
    k1 = tiny_model("adapter", width=16, kernel_size=1).encoder.pre_mlp[0]
    assert k1.conv.weight.shape == (16, 1, 1, 1, 1)
    assert torch.equal(k1.conv.weight, torch.ones_like(k1.conv.weight))  # identity in time


def test_identity_at_init_with_the_k1_conv():
    torch.manual_seed(0)
    probe = tiny_model("linear_probe").eval()
    model = tiny_model("adapter", kernel_size=1).eval()
    model.load_state_dict(probe.state_dict(), strict=False)
    with torch.no_grad():
        assert torch.equal(model(video()), probe(video()))


def test_frames_never_interact():
    assert not make_method_config("adapter").frames_interact
    assert not make_method_config("adapter", kernel_size=1).frames_interact


def test_trainable_set_is_adapters_and_head():
    model = tiny_model("adapter")
    names = {n for n, _ in model.trainable_named_parameters()}
    assert names <= model.added_state_keys() and HEAD <= names


@pytest.mark.parametrize("options,message", [
    ({"width": -3}, r"adapter: option width=-3 is invalid"),
    ({"kernel_size": 3}, r"adapter: option kernel_size=3 is invalid: a plain adapter is per-frame"),
])
def test_invalid_options(options, message):
    with pytest.raises(MethodConfigError, match=message):
        make_method_config("adapter", **options)


