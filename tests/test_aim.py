"""aim: AIM's adapters as in the reference code, its exact trainable counts, identity at
initialisation under the shared head, frame-order sensitivity and AIM's own head as an option."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from methods import MethodConfigError, build_model, make_method_config
from tests.method_helpers import HEAD, TINY, clip_b16_trainable, randomise_trainable, tiny_model, video

C = 768  # CLIP ViT-B/16 width


def test_trainable_counts_on_clip_vit_b16_match_the_reference_and_the_published_sizes():
    """Derived from the reference code (vit_clip.py, tools/train.py), CLIP ViT-B/16, 8 frames.

    One adapter ``Adapter(768, mlp_ratio=0.25)``: hidden int(768 * 0.25) = 192;
    D_fc1 768*192 + 192 = 147,648 and D_fc2 192*768 + 768 = 148,224: 295,872 parameters.
    K400 model (num_tadapter=1): T_Adapter, S_Adapter, MLP_Adapter per block, 12 blocks:
    12 * 3 * 295,872 = 10,651,392; temporal_embedding (1, 8, 768) = 6,144; ln_post 2 * 768 = 1,536;
    head 768 * 400 + 400 = 307,600. Total 10,966,672 (the published "11M").
    SSv2 model (num_tadapter=2, adds T_Adapter_in): 12 * 4 * 295,872 = 14,201,856; + 6,144 + 1,536
    + head 768 * 174 + 174 = 133,806. Total 14,343,342 (the published "14M").
    With the other dataset's class count: K400 model 10,651,392 + 7,680 + 133,806 = 10,792,878;
    SSv2 model 14,201,856 + 7,680 + 307,600 = 14,517,136.
    """
    adapter = 2 * C * 192 + 192 + C
    assert adapter == 295_872
    counts = {(preset, classes): clip_b16_trainable("aim", {"preset": preset}, classes)
              for preset in ("k400", "ssv2") for classes in (400, 174)}
    assert counts == {("k400", 400): 10_966_672, ("k400", 174): 10_792_878,
                      ("ssv2", 400): 14_517_136, ("ssv2", 174): 14_343_342}
    assert counts[("k400", 400)] == 12 * 3 * adapter + 8 * C + 2 * C + 400 * C + 400
    assert counts[("ssv2", 174)] == 12 * 4 * adapter + 8 * C + 2 * C + 174 * C + 174
    assert round(counts[("k400", 400)] / 1e6) == 11 and round(counts[("ssv2", 174)] / 1e6) == 14


@pytest.mark.slow
def test_flops_match_the_published_606_gflops_for_three_views():
    """AIM's paper: 606 GFLOPs for 3 views of 8 frames (K400, ViT-B/16). The frozen attention run over
    time adds qkv + proj (4 C^2 per token per block) to the image model's 140.5 G; fvcore convention."""
    from bench.counting import count_model
    torch.manual_seed(0)
    model = build_model("aim", "clip_vit_b16", 400, 8, random_init=True, method_options={"preset": "k400"})
    gflops = count_model(model, 8, 224).gflops_per_view
    assert 3 * gflops == pytest.approx(606, rel=0.005)


def test_one_clip_vit_b16_adapter_and_the_presets():
    with torch.device("meta"):
        model = build_model("aim", "clip_vit_b16", 400, 8, random_init=True, method_options={"preset": "ssv2"})
    attention = model.encoder.attn_branch[0]
    assert sum(p.numel() for p in attention.s_adapter.parameters()) == 295_872
    assert attention.t_adapter_in is not None and model.encoder.mlp_branch[0].side.scale == 1.0
    k400 = make_method_config("aim", preset="k400")
    assert (k400.num_tadapter, k400.adapter_scale, k400.bottleneck_ratio) == (1, 0.5, 0.25)


def test_trainable_set_is_adapters_temporal_embedding_ln_post_and_head():
    model = tiny_model("aim")
    names = {n for n, _ in model.trainable_named_parameters()}
    adapters = {n for n in names if n.startswith(("encoder.attn_branch.", "encoder.mlp_branch."))}
    assert names - adapters == HEAD | {"encoder.post_embed.time_embed", "encoder.norm.weight",
                                       "encoder.norm.bias"}
    assert {n.split(".")[3] for n in adapters if n.startswith("encoder.attn_branch.")} == {
        "t_adapter", "s_adapter"}
    assert all(".side.adapter." in n for n in adapters if n.startswith("encoder.mlp_branch."))


@pytest.mark.parametrize("preset", ["k400", "ssv2"])
def test_init_is_the_reference_init_and_the_image_model(preset):
    torch.manual_seed(0)
    model = tiny_model("aim", preset=preset).eval()
    enc = model.encoder
    adapters = [m for m in model.modules() if type(m).__name__ == "AimAdapter"]
    assert len(adapters) == enc.depth * (3 if preset == "k400" else 4)
    for adapter in adapters:
        assert isinstance(adapter.act, nn.GELU) and adapter.fc1.out_features == 16  # int(64 * 0.25)
        assert not adapter.fc2.weight.any() and not adapter.fc2.bias.any() and not adapter.fc1.bias.any()
        assert 0.015 < adapter.fc1.weight.std() < 0.025  # trunc_normal_(std=0.02), bounds +-2 as timm
    assert not enc.post_embed.time_embed.any()
    probe = tiny_model("linear_probe").eval()
    model.load_state_dict(probe.state_dict(), strict=False)
    with torch.no_grad():
        assert torch.equal(model(video()), probe(video()))


def reference_forward(model: nn.Module, clip: torch.Tensor) -> torch.Tensor:
    """AIM's ViT_CLIP.forward and ResidualAttentionBlock.forward written out over this suite's
    frozen modules and the model's adapters ([B*T, N, C] instead of the reference's [N, B*T, C])."""
    enc, cfg = model.encoder, model.method_config
    batch, _, frames = clip.shape[:3]
    x = enc.embed(clip.transpose(1, 2).flatten(0, 1))
    n = x.shape[1]
    x = (x.view(batch, frames, n, -1) + enc.post_embed.time_embed[:, :, None]).flatten(0, 1)
    x = enc.norm_pre(x)
    for i, block in enumerate(enc.blocks):
        aim = enc.attn_branch[i]
        xt = x.view(batch, frames, n, -1).transpose(1, 2).reshape(batch * n, frames, -1)  # (b n) t d
        xt = block.norm1(xt)
        if cfg.num_tadapter == 2:
            xt = aim.t_adapter_in(xt)
        xt = aim.t_adapter(block.attn(xt))
        x = x + xt.view(batch, n, frames, -1).transpose(1, 2).reshape(batch * frames, n, -1)
        x = x + aim.s_adapter(block.attn(block.norm1(x)))
        xn = block.norm2(x)
        x = x + block.mlp(xn) + cfg.adapter_scale * enc.mlp_branch[i].side.adapter(xn)
    cls = enc.norm(x)[:, 0].view(batch, frames, -1).mean(1)  # AIM's head: ln_post per frame
    return model.head(cls)


@pytest.mark.parametrize("preset", ["k400", "ssv2"])
def test_forward_is_the_reference_forward(preset):
    torch.manual_seed(0)
    model = tiny_model("aim", preset=preset, final_norm="per_frame").double().eval()
    randomise_trainable(model, torch.Generator().manual_seed(1))
    clip = video(dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(model(clip), reference_forward(model, clip), rtol=0, atol=1e-10)
    assert not model.method_config.starts_as_image_model  # AIM's own head is not the shared one


def test_final_norm_pooled_is_the_shared_head():
    torch.manual_seed(0)
    model = tiny_model("aim").double().eval()
    randomise_trainable(model, torch.Generator().manual_seed(1))
    clip = video(dtype=torch.float64)
    frames = clip.transpose(1, 2).flatten(0, 1)
    with torch.no_grad():
        cls = model.encoder(frames, 4).view(2, 4, -1)
        torch.testing.assert_close(model(clip), model.head(model.encoder.norm(cls.mean(1))), rtol=0, atol=0)
        model.final_norm = "per_frame"
        assert not torch.allclose(model(clip), model.head(model.encoder.norm(cls.mean(1))))


def test_declares_that_its_frames_interact():
    """So test_methods.test_frame_order_as_declared requires its logits to change with reversed frames."""
    assert make_method_config("aim").frames_interact


def test_built_for_its_number_of_frames():
    with pytest.raises(ValueError, match="built for 4 frames but got clips of 6"):
        tiny_model("aim")(video(frames=6))


@pytest.mark.parametrize("options,message", [
    ({"num_tadapter": 3}, r"aim: option num_tadapter=3 is invalid: expected one of \[1, 2\]"),
    ({"bottleneck_ratio": 0}, r"aim: option bottleneck_ratio=0 is invalid: expected a number > 0"),
    ({"adapter_scale": -1}, r"aim: option adapter_scale=-1 is invalid"),
    ({"final_norm": "post"}, r"aim: option final_norm='post' is invalid: expected one of \['pooled', "
                             r"'per_frame'\]"),
])
def test_invalid_options(options, message):
    with pytest.raises(MethodConfigError, match=message):
        make_method_config("aim", **options)


def test_bottleneck_too_narrow_for_the_backbone():
    with pytest.raises(MethodConfigError, match=r"bottleneck_ratio=0.01 is invalid: gives no hidden unit "
                                                 r"at width 64"):
        build_model("aim", TINY, 5, 4, random_init=True, method_options={"bottleneck_ratio": 0.01})
