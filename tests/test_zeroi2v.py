"""zeroi2v: the shifted heads and linear adapters as the reference code computes them, its exact
trainable counts, and the merge: same float64 logits, the plain image model's FLOPs, and a merged
checkpoint evaluated by bench.eval."""
from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from methods import MethodConfigError, build_model, make_method_config
from methods.backbone import WrappedLinear
from methods.zeroi2v import LinearAdapter, ZeroI2VProjection, merge, shift_heads
from tests.method_helpers import (
    HEAD,
    TINY,
    assert_bench_eval_reproduces_merged,
    assert_gpu_fast_paths_as_accurate_as_plain_bf16,
    clip_b16_trainable,
    perturb_trainable,
    randomise_trainable,
    tiny_model,
    tiny_options,
    video,
)

C = 768  # CLIP ViT-B/16 width
TIME_AND_LN_POST = {"encoder.post_embed.time_embed", "encoder.norm.weight", "encoder.norm.bias"}


def test_trainable_counts_on_clip_vit_b16_match_the_reference():
    """Derived from the reference code (vit_zero_clip.py: ``init_weights``' trainable set), CLIP ViT-B/16,
    8 frames. One ``LinearAdapter(768, mlp_ratio=0.25)``: hidden int(768 * 0.25) = 192; D_fc1
    768*192 + 192 = 147,648 and D_fc2 192*768 + 768 = 148,224: 295,872. Four per block (T_Adapter_in,
    S_Adapter, MLP_Adapter, MLP_Adapter_out; ``num_tadapter=2`` in both configs), 12 blocks:
    14,201,856; temporal_embedding (1, 8, 768) 6,144; ln_post 2*768 = 1,536; head 768*400 + 400 =
    307,600 (K400) or 768*174 + 174 = 133,806 (SSv2). Total 14,517,136 (K400), 14,343,342 (SSv2); the
    presets differ in scale, dropout and shifts, none of which has parameters. Without MLP_Adapter_out:
    12 * 3 * 295,872 = 10,651,392, + 7,680 + head. Merged (inference): the temporal embedding, ln_post
    and the head are all that is left to load: 6,144 + 1,536 + head = 315,280 (K400)."""
    adapter = (C * 192 + 192) + (192 * C + C)
    assert adapter == 295_872
    counts = {(preset, classes): clip_b16_trainable("zeroi2v", {"preset": preset}, classes)
              for preset in ("k400", "ssv2") for classes in (400, 174)}
    assert counts == {("k400", 400): 14_517_136, ("k400", 174): 14_343_342,
                      ("ssv2", 400): 14_517_136, ("ssv2", 174): 14_343_342}
    assert counts[("k400", 400)] == 12 * 4 * adapter + 8 * C + 2 * C + 400 * C + 400
    assert counts[("ssv2", 174)] == 12 * 4 * adapter + 8 * C + 2 * C + 174 * C + 174
    without_mlp_out = clip_b16_trainable("zeroi2v", {"preset": "k400", "mlp_out_adapter": False}, 400)
    assert without_mlp_out == 12 * 3 * adapter + 8 * C + 2 * C + 307_600 == 10_966_672
    assert clip_b16_trainable("zeroi2v", {"preset": "k400", "merged": True}, 400) == 8 * C + 2 * C + 307_600 == 315_280


def reference_time_shift(x: torch.Tensor, num_frames: int, fold_div: int, long_shift_div: int = -1,
                         long_shift_right: bool = False) -> torch.Tensor:
    """``TemporalShift.forward`` of stdha_ablation.py (ops_type 'stdha') on x [HW+1, B*T, C]."""
    n, bt, c = x.shape
    feat = x.view(n, bt // num_frames, num_frames, c)
    out = feat.clone()
    fold = int(c // fold_div)
    out[:, :, 1:, :fold] = feat[:, :, :-1, :fold]
    out[:, :, :-1, fold:2 * fold] = feat[:, :, 1:, fold:2 * fold]
    if long_shift_div > 0:
        long_fold = c // long_shift_div
        out[:, :, 2:, 2 * fold:(2 * fold + long_fold)] = feat[:, :, :-2, 2 * fold:(2 * fold + long_fold)]
        if long_shift_right:
            out[:, :, :-2, (2 * fold + long_fold):(2 * fold + 2 * long_fold)] = \
                feat[:, :, 2:, (2 * fold + long_fold):(2 * fold + 2 * long_fold)]
    return out.view(n, bt, c)


# the presets' shifts and the reference's stdha_cfg they stand for (fold = one head at shift_div = heads)
CONFIGS = {"k400": {}, "ssv2": {"long_shift_div": 4, "long_shift_right": True}}


@pytest.mark.parametrize("preset", ["k400", "ssv2"])
def test_shifted_heads_are_the_references_temporal_shift_of_k_and_v(preset):
    heads, frames = 4, 5
    qkv = torch.randn(2 * frames, 7, 3 * 64, dtype=torch.float64)
    shifted = shift_heads(qkv, frames, heads, make_method_config("zeroi2v", preset=preset).shifts)
    q, k, v = qkv.chunk(3, dim=-1)
    expected = [q, *(reference_time_shift(t.transpose(0, 1), frames, heads, **CONFIGS[preset]).transpose(0, 1)
                     for t in (k, v))]
    assert torch.equal(shifted, torch.cat(expected, dim=-1))
    assert not torch.equal(shifted, qkv)


def reference_forward(model: nn.Module, clip: torch.Tensor, preset: str) -> torch.Tensor:
    """ViT_Zero_CLIP.forward and ResidualAttentionBlock_ZeroI2V.forward (with STDHA: in-projection,
    k and v shifted, attention, out-projection) written out over this suite's frozen weights and the
    model's adapters ([B*T, N, C] instead of the reference's [N, B*T, C]), and its I3D head's mean."""
    enc, cfg = model.encoder, model.method_config
    batch, _, frames = clip.shape[:3]
    heads = enc.config.heads
    x = enc.embed(clip.transpose(1, 2).flatten(0, 1))
    n = x.shape[1]
    x = enc.norm_pre((x.view(batch, frames, n, -1) + enc.post_embed.time_embed[:, :, None]).flatten(0, 1))
    for i, block in enumerate(enc.blocks):
        qkv, proj = block.attn.qkv, block.attn.proj
        fc1, fc2 = block.mlp.fc1, block.mlp.fc2
        q, k, v = F.linear(qkv.wrapper.before(block.norm1(x)), qkv.weight, qkv.bias).chunk(3, dim=-1)
        k, v = (reference_time_shift(t.transpose(0, 1), frames, heads, **CONFIGS[preset]).transpose(0, 1)
                for t in (k, v))
        q, k, v = (t.reshape(batch * frames, n, heads, -1).transpose(1, 2) for t in (q, k, v))
        attn = ((q @ k.transpose(-1, -2)) * q.shape[-1] ** -0.5).softmax(dim=-1) @ v
        x = x + proj.wrapper.after(F.linear(attn.transpose(1, 2).flatten(2), proj.weight, proj.bias))
        hidden = block.mlp.act(F.linear(fc1.wrapper.before(block.norm2(x)), fc1.weight, fc1.bias))
        mlp_out = F.linear(hidden, fc2.weight, fc2.bias)
        x = x + (fc2.wrapper.after(mlp_out) if cfg.mlp_out_adapter else mlp_out)
    cls = enc.norm(x[:, 0]).view(batch, frames, -1).mean(1)  # ln_post per frame, I3D head's average
    return model.head(cls)


@pytest.mark.parametrize("preset", ["k400", "ssv2"])
def test_forward_is_the_reference_forward(preset):
    torch.manual_seed(0)
    model = tiny_model("zeroi2v", num_frames=5, preset=preset, final_norm="per_frame").double().eval()
    randomise_trainable(model, torch.Generator().manual_seed(1))
    clip = video(frames=5, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(model(clip), reference_forward(model, clip, preset), rtol=0, atol=1e-10)
    assert not model.method_config.starts_as_image_model


def test_init_and_trainable_set():
    torch.manual_seed(0)
    model = build_model("zeroi2v", TINY, 5, 4, random_init=True, method_options={"preset": "k400"})
    adapters = [m for m in model.modules() if isinstance(m, LinearAdapter)]
    assert len(adapters) == 4 * model.encoder.depth
    for adapter in adapters:
        assert adapter.fc1.out_features == 16 and not adapter.fc1.bias.any()  # int(64 * 0.25)
        assert not adapter.fc2.weight.any() and not adapter.fc2.bias.any()
        assert 0.015 < adapter.fc1.weight.std() < 0.025 and adapter.scale == 0.5 and adapter.dropout.p == 0.1
    names = {n for n, _ in model.trainable_named_parameters()}
    wrapped = {n for n in names if ".zeroi2v." in n}
    assert names - wrapped == HEAD | TIME_AND_LN_POST
    assert {".".join(n.split(".")[4:7:2]) for n in wrapped} == {
        "qkv.before", "proj.after", "fc1.before", "fc2.after"}


def test_without_shifts_it_starts_as_the_image_model():
    """The adapters start as the identity and the temporal embedding at zero: only the shifted heads
    make the initial model differ from the image model (test_methods checks the declaration)."""
    assert make_method_config("zeroi2v", shifts=()).starts_as_image_model
    torch.manual_seed(0)
    model = tiny_model("zeroi2v", shifts=()).eval()
    probe = tiny_model("linear_probe").eval()
    model.load_state_dict(probe.state_dict(), strict=False)
    with torch.no_grad():
        assert torch.equal(model(video()), probe(video()))


@pytest.mark.parametrize("options", [{"preset": "k400"}, {"preset": "ssv2"}, {"mlp_out_adapter": False},
                                     {"preset": "ssv2", "final_norm": "per_frame"}],
                         ids=["k400", "ssv2", "no_mlp_out", "per_frame"])
def test_merged_model_gives_the_same_logits_in_float64(options):
    torch.manual_seed(0)
    model = tiny_model("zeroi2v", **options).double().eval()
    randomise_trainable(model, torch.Generator().manual_seed(1))
    clip = video(dtype=torch.float64)
    with torch.no_grad():
        before = model(clip)
    assert merge(model) is model and model.method_config.merged
    assert not any(isinstance(m, LinearAdapter) for m in model.modules())
    wrappers = [m.wrapper for m in model.modules() if isinstance(m, WrappedLinear)]
    assert len(wrappers) == model.encoder.depth and all(w.shift is not None for w in wrappers)  # the qkv shifts
    assert {n for n, _ in model.trainable_named_parameters()} == HEAD | TIME_AND_LN_POST
    with torch.no_grad():
        torch.testing.assert_close(model(clip), before, rtol=1e-12, atol=1e-12)
    # the merged model is what merged=True builds: same keys, and its state loads into one
    built = tiny_model("zeroi2v", **options, merged=True).double().eval()
    assert set(built.state_dict()) == set(model.state_dict())
    built.load_state_dict(model.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(built(clip), before, rtol=1e-12, atol=1e-12)


def test_merged_flops_are_the_image_models():
    """Counted by bench.counting (fvcore): the shift and the temporal embedding move data only."""
    from bench.counting import count_model
    torch.manual_seed(0)
    plain = count_model(tiny_model("linear_probe"), 4, 32)
    model = tiny_model("zeroi2v", preset="ssv2")
    unmerged = count_model(model, 4, 32)
    merged = count_model(merge(model), 4, 32)
    assert merged.unsupported_ops == unmerged.unsupported_ops == {}
    assert merged.gflops_per_view == pytest.approx(plain.gflops_per_view, rel=0.005)
    assert unmerged.gflops_per_view > 1.1 * plain.gflops_per_view


@pytest.mark.slow
def test_merged_flops_on_clip_vit_b16_match_the_published_422_gflops_for_three_views():
    from bench.counting import count_model
    torch.manual_seed(0)
    model = build_model("zeroi2v", "clip_vit_b16", 400, 8, random_init=True, method_options={"preset": "k400"})
    gflops = count_model(merge(model), 8, 224).gflops_per_view
    assert 3 * gflops == pytest.approx(422, rel=0.005)


def test_bench_eval_evaluates_a_merged_checkpoint(tmp_path, world_cache, monkeypatch):
    """The merged backbone is an image weights file (--weights), the rest a trainable checkpoint
    (--init); bench.eval builds zeroi2v with merged=true on them and reproduces the unmerged model."""
    monkeypatch.setenv("BENCH_CACHE", str(world_cache))
    torch.manual_seed(5)
    model = build_model("zeroi2v", TINY, 10, 4, random_init=True, method_options=tiny_options("zeroi2v"))
    randomise_trainable(model, torch.Generator().manual_seed(6))
    assert_bench_eval_reproduces_merged(model, merge, ["--methods", "zeroi2v", "--method-option",
                                                       "zeroi2v.merged=true"], tmp_path)


@pytest.mark.parametrize("options,message", [
    ({"shifts": "-1,x"}, r"zeroi2v: option shifts='-1,x' is invalid: expected a frame offset per head"),
    ({"shifts": (1.5,)}, r"zeroi2v: option shifts=\(1.5,\) is invalid"),
    ({"adapter_dropout": 1}, r"zeroi2v: option adapter_dropout=1 is invalid: expected a probability"),
    ({"bottleneck_ratio": 0}, r"zeroi2v: option bottleneck_ratio=0 is invalid: expected a number > 0"),
    ({"merged": 1}, r"zeroi2v: option merged=1 is invalid: expected true or false"),
    ({"final_norm": "post"}, r"zeroi2v: option final_norm='post' is invalid"),
])
def test_invalid_options(options, message):
    with pytest.raises(MethodConfigError, match=message):
        make_method_config("zeroi2v", **options)


def test_options_that_depend_on_the_backbone():
    with pytest.raises(MethodConfigError, match=r"shifts=\(-1, 1, -2, 2, 1\) is invalid: backbone 'vit_tiny_test' "
                                                 r"has only 4 heads"):
        build_model("zeroi2v", TINY, 5, 4, random_init=True, method_options={"shifts": "-1,1,-2,2,1"})
    assert make_method_config("zeroi2v", shifts=" -1, 1,-2,2").shifts == (-1, 1, -2, 2)
    assert make_method_config("zeroi2v", preset="ssv2").shifts == (-1, 1, -2, 2)


def test_a_projection_wrapper_folds_to_the_same_affine_map():
    torch.manual_seed(0)
    before, after = (LinearAdapter(8, 0.5, 0.7, 0.0).double() for _ in range(2))
    with torch.no_grad():
        for param in (*before.parameters(), *after.parameters()):
            param.normal_(0, 0.3)
    linear = WrappedLinear(nn.Linear(8, 8).double(), "zeroi2v", ZeroI2VProjection(before, after))
    x = torch.randn(3, 8, dtype=torch.float64)
    with torch.no_grad():
        expected = linear(x)
        linear.wrapper.fold_into(linear)
        assert linear.wrapper.before is None and linear.wrapper.after is None
        torch.testing.assert_close(linear(x), expected, rtol=1e-12, atol=1e-12)


# -- GPU ----------------------------------------------------------------------------------------------

@pytest.mark.gpu
@pytest.mark.parametrize("preset", ["k400", "ssv2"])
def test_gpu_fast_paths_keep_the_function_at_bf16_tolerance(preset):
    """The engine's fast paths on ZeroI2V at the paper's architecture (packed attention around the
    shifted qkv, fused QuickGELU, matmul patch embedding, frozen weights in bf16) against float64."""
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = build_model("zeroi2v", "clip_vit_b16", 400, 8, random_init=True, method_options={"preset": preset})
    perturb_trainable(model, torch.Generator().manual_seed(1))
    assert_gpu_fast_paths_as_accurate_as_plain_bf16(
        model, ["fused_quick_gelu", "packed_attention_grads", "matmul_patch_embed"])
