"""prompt_tuning: VPT-deep/shallow tokens (DESIGN.md section 3 counts), where they enter, init bound."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from methods import MethodConfigError, make_method_config
from tests.method_helpers import HEAD, clip_b16_trainable, tiny_model


@pytest.mark.parametrize("num_classes,expected", [(400, 768_400), (174, 594_606)])
def test_trainable_count_on_clip_vit_b16(num_classes, expected):
    assert clip_b16_trainable("prompt_tuning", {"num_tokens": 50, "deep": True}, num_classes) == expected


def test_tokens():
    deep = tiny_model("prompt_tuning", num_tokens=3, deep=True)
    shallow = tiny_model("prompt_tuning", num_tokens=3, deep=False)
    bound = (6 / (3 * 8 ** 2 + 64)) ** 0.5
    slots = [deep.encoder.post_embed, *deep.encoder.pre_attn[1:]]
    prompts = [slot.tokens for slot in slots]
    assert isinstance(deep.encoder.pre_attn[0], nn.Identity)
    assert len(prompts) == 4 and all(p.shape == (1, 3, 64) and p.abs().max() <= bound for p in prompts)
    assert all(isinstance(s, nn.Identity) for s in shallow.encoder.pre_attn)
    assert shallow.encoder.post_embed.tokens.shape == (1, 3, 64)
    x = torch.randn(2, 17, 64)
    inserted = slots[0](x, 2)
    assert inserted.shape == (2, 20, 64) and torch.equal(inserted[:, 1:4], prompts[0].expand(2, -1, -1))
    replaced = slots[1](inserted, 2)
    assert replaced.shape == (2, 20, 64) and torch.equal(replaced[:, 1:4], prompts[1].expand(2, -1, -1))
    assert torch.equal(replaced[:, 4:], x[:, 1:]) and torch.equal(replaced[:, 0], x[:, 0])


def test_first_prompts_pass_through_ln_pre():
    """VPT's prompts join the embeddings' output, so CLIP's ln_pre normalises them too."""
    model = tiny_model("prompt_tuning", num_tokens=3, deep=False)
    enc = model.encoder
    seen = {}
    enc.blocks[0].norm1.register_forward_pre_hook(lambda module, args: seen.setdefault("x", args[0]))
    frames = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        enc(frames, 2)
        expected = enc.norm_pre(enc.post_embed(enc.embed(frames), 2))
    torch.testing.assert_close(seen["x"][:, 1:4], expected[:, 1:4], rtol=0, atol=0)
    assert not torch.allclose(seen["x"][:, 1:4], enc.post_embed.tokens.expand(2, -1, -1))


def test_trainable_set_is_prompts_and_head():
    model = tiny_model("prompt_tuning")
    names = {n for n, _ in model.trainable_named_parameters()}
    assert names <= model.added_state_keys() and HEAD <= names


@pytest.mark.parametrize("options,message", [
    ({"num_tokens": 0}, r"prompt_tuning: option num_tokens=0 is invalid"),
    ({"deep": "yes"}, r"prompt_tuning: option deep='yes' is invalid"),
])
def test_invalid_options(options, message):
    with pytest.raises(MethodConfigError, match=message):
        make_method_config("prompt_tuning", **options)
