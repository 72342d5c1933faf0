"""evl: the decoder as the reference code computes it, its exact trainable counts, the frozen backbone
run without autograd (no activation of it kept for the backward), and its options."""
from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from methods import MethodConfigError, build_model, make_method_config
from methods.evl import relative_positions
from tests.method_helpers import (
    HEAD,
    TINY,
    assert_gpu_fast_paths_as_accurate_as_plain_bf16,
    clip_b16_trainable,
    perturb_trainable,
    randomise_trainable,
    saved_bytes,
    tiny_model,
    video,
)

C, OFFSETS = 768, 27 * 27  # CLIP ViT-B/16 width; (2*14 - 1)^2 patch offsets on its 14 x 14 grid


def test_trainable_counts_on_clip_vit_b16_match_the_reference():
    """Derived from the reference code (model.py, vision_transformer.py; 4 x 768 decoder, 12 heads,
    8 frames), CLIP ViT-B/16.

    One decoder layer (``TransformerDecoderLayer``): q/k/v/out projections 4 * (768*768 + 768) =
    2,362,368; MLP fc1 768*3072 + 3072 = 2,362,368 and fc2 3072*768 + 768 = 2,360,064; norm1-3
    3 * 2*768 = 4,608: 7,089,408. Its temporal modules: depthwise Conv1d 768*3 + 768 = 3,072; position
    embedding 8 * 768 = 6,144; cross-attention w1 and w2 2 * 729*768 = 1,119,744 (729 = 27 * 27
    offsets). Per layer 8,218,368; 4 layers 32,873,472; the query (``cls_token``) 768; EVL's head
    LayerNorm 1,536; linear 768*400 + 400 = 307,600 (K400) or 768*174 + 174 = 133,806 (SSv2).
    Total 33,183,376 (K400), 33,009,582 (SSv2).
    """
    decoder_layer = 4 * (C * C + C) + (C * 4 * C + 4 * C) + (4 * C * C + C) + 3 * 2 * C
    temporal = (3 * C + C) + 8 * C + 2 * OFFSETS * C
    assert (decoder_layer, temporal) == (7_089_408, 3_072 + 6_144 + 1_119_744)
    body = 4 * (decoder_layer + temporal) + C + 2 * C
    assert body == 32_875_776
    assert clip_b16_trainable("evl", {}, 400) == body + 400 * C + 400 == 33_183_376
    assert clip_b16_trainable("evl", {}, 174) == body + 174 * C + 174 == 33_009_582
    with torch.device("meta"):
        model = build_model("evl", "clip_vit_b16", 400, 8, random_init=True)
    layer = model.readout.layers[0]
    assert sum(p.numel() for name, p in layer.named_parameters()
               if name.startswith(("norm", "attn.", "mlp."))) == decoder_layer
    assert model.readout.blocks == (8, 9, 10, 11)  # the last four blocks
    assert clip_b16_trainable("evl", {"num_layers": 2}, 400) == 2 * (decoder_layer + temporal) + 3 * C + 307_600


def reference_offsets(height: int, width: int) -> torch.Tensor:
    """``TemporalCrossAttention.idx_tensor``, built as the reference builds it."""
    index = torch.zeros(height * width, height * width, dtype=torch.long)
    for q in range(height * width):
        qi, qj = q // width, q % width
        for k in range(height * width):
            ki, kj = k // width, k % width
            index[q, k] = (qi - ki + height - 1) * (width * 2 - 1) + (qj - kj + width - 1)
    return index


def test_relative_positions_are_the_references_index():
    for grid in ((4, 4), (14, 14), (3, 5)):
        assert torch.equal(relative_positions(*grid), reference_offsets(*grid))


def reference_forward(model: nn.Module, clip: torch.Tensor) -> torch.Tensor:
    """EVLTransformer.forward written out as the reference writes it (its backbone's features: each
    block's output and its unscaled per-head q, k; einsum attention, Conv1d, in-place sums) over this
    model's frozen modules and trainable parameters."""
    enc, readout = model.encoder, model.readout
    batch, _, frames = clip.shape[:3]
    heads, grid = enc.config.heads, enc.config.img_size // enc.config.patch_size
    x = enc.norm_pre(enc.embed(clip.transpose(1, 2).flatten(0, 1)))
    tokens = x.shape[1]
    features = []
    for block in enc.blocks:
        h = block.norm1(x)
        q, k, _ = block.attn.qkv(h).view(batch, frames, tokens, 3, heads, -1).unbind(3)
        x = x + block.attn(h)
        x = x + block.mlp(block.norm2(x))
        features.append({"out": x.view(batch, frames, tokens, -1), "q": q, "k": k})
    features = features[-len(readout.layers):]
    index = reference_offsets(grid, grid)

    def half(q, k, w):  # TemporalCrossAttention.forward_half
        q, k = q[:, :, 1:], k[:, :, 1:]
        attn = torch.einsum("ntqhd,ntkhd->ntqkh", q / (q.size(-1) ** 0.5), k).softmax(dim=-2).mean(dim=-1)
        return torch.einsum("ntqk,qkc->ntqc", attn, w[index])

    query = readout.query.view(1, 1, -1).repeat(batch, 1, 1)
    for layer, feat in zip(readout.layers, features):
        frame_features = feat["out"].clone()
        dim = frame_features.shape[-1]
        if layer.conv is not None:
            series = feat["out"].permute(0, 2, 3, 1).flatten(0, 1)  # N * L, C, T
            conv = F.conv1d(series, layer.conv.weight.view(dim, 1, 3), layer.conv.bias, padding=1, groups=dim)
            frame_features += conv.view(batch, tokens, dim, frames).permute(0, 3, 1, 2)
        if layer.time_embed is not None:
            frame_features += layer.time_embed.time_embed.view(1, frames, 1, dim)
        if layer.cross_attention is not None:
            ret = torch.zeros_like(frame_features)
            ret[:, 1:, 1:] += half(feat["q"][:, 1:], feat["k"][:, :-1], layer.cross_attention.w1)
            ret[:, :-1, 1:] += half(feat["q"][:, :-1], feat["k"][:, 1:], layer.cross_attention.w2)
            frame_features += ret
        y = layer.norm3(frame_features.flatten(1, 2))
        # TransformerDecoderLayer.forward with Attention.forward (k_proj / v_proj: kv_proj's halves)
        attn, xq = layer.attn, layer.norm1(query)
        (wk, wv), (bk, bv) = attn.kv_proj.weight.chunk(2), attn.kv_proj.bias.chunk(2)
        qh = attn.q_proj(xq).view(batch, 1, heads, -1)
        kh, vh = (F.linear(y, w, b).view(batch, y.shape[1], heads, -1) for w, b in ((wk, bk), (wv, bv)))
        aff = torch.einsum("nqhc,nkhc->nqkh", qh / (qh.size(-1) ** 0.5), kh).softmax(dim=-2)
        query = query + attn.out_proj(torch.einsum("nqlh,nlhc->nqhc", aff, vh).flatten(-2))
        query = query + layer.mlp(layer.norm2(query))
    return model.head(readout.norm(query[:, 0]))


@pytest.mark.parametrize("options", [
    {}, {"num_layers": 2}, {"temporal_conv": False}, {"temporal_pos_embed": False, "temporal_cross_attention": False},
], ids=["default", "two_layers", "no_conv", "conv_only"])
def test_forward_is_the_reference_forward(options):
    torch.manual_seed(0)
    model = tiny_model("evl", **options).double().eval()
    randomise_trainable(model, torch.Generator().manual_seed(1))
    clip = video(dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(model(clip), reference_forward(model, clip), rtol=0, atol=1e-10)


def test_init_is_the_references():
    torch.manual_seed(0)
    readout = build_model("evl", TINY, 5, 4, random_init=True).readout  # the defaults: the K400 model
    assert not readout.query.any()  # the reference defines a N(0, 0.02) init but never calls it
    for layer in readout.layers:
        assert not layer.cross_attention.w1.any() and not layer.cross_attention.w2.any()
        assert not layer.time_embed.time_embed.any() and layer.conv.weight.abs().sum() > 0
        bound = (6 / (64 + 64)) ** 0.5  # Xavier-uniform of each 64 x 64 projection, k and v alike
        for weight in (layer.attn.q_proj.weight, *layer.attn.kv_proj.weight.chunk(2)):
            assert weight.abs().max() <= bound and weight.abs().max() > 0.9 * bound
        assert not layer.attn.kv_proj.bias.any() and layer.mlp.fc1.bias.abs().max() < 1e-4
        assert layer.mlp.drop1.p == 0.5 and layer.mlp.drop2.p == 0.0  # dropout between fc1 and fc2
    assert isinstance(readout.norm, nn.LayerNorm) and readout.norm.weight.requires_grad


def test_trainable_set_is_the_decoder_and_the_head():
    model = tiny_model("evl")
    names = {n for n, _ in model.trainable_named_parameters()}
    assert names == HEAD | {f"readout.{n}" for n, _ in model.readout.named_parameters()}
    assert not any(p.requires_grad for p in model.encoder.parameters())
    assert not any(k.startswith("readout.") for k in model.encoder.backbone_state_keys())


def test_the_backbone_runs_without_autograd():
    """Even with every backbone weight and the input asking for gradients, the decoder gets plain
    tensors, nothing reaches the backbone, and autograd saves exactly what the decoder and head alone
    save: no activation of the image model is kept for the backward."""
    torch.manual_seed(0)
    model = tiny_model("evl")
    randomise_trainable(model, torch.Generator().manual_seed(1))
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0
    for param in model.encoder.parameters():
        param.requires_grad_(True)
    clip = video().requires_grad_(True)
    seen = []
    hooks = [layer.register_forward_pre_hook(lambda m, args: seen.append(args[1])) for layer in model.readout.layers]
    model(clip).sum().backward()
    for hook in hooks:
        hook.remove()
    assert len(seen) == len(model.readout.layers)
    assert all(t.grad_fn is None and not t.requires_grad for f in seen for t in f)
    assert clip.grad is None and all(p.grad is None for p in model.encoder.parameters())
    assert all(p.grad is not None for _, p in model.trainable_named_parameters())

    readout, frames = model.readout, clip.detach().transpose(1, 2).flatten(0, 1)
    with torch.no_grad():
        features = model.encoder.block_features(frames, 4, readout.blocks)

    def decoder_and_head() -> torch.Tensor:
        x = readout.query.view(1, 1, -1).expand(2, 1, -1)
        for layer, block in zip(readout.layers, features):
            x = layer(x, block, 4)
        return model.head(readout.norm(x[:, 0]))
    assert saved_bytes(lambda: model(clip)) == saved_bytes(decoder_and_head) > 0


def test_without_its_temporal_modules_it_is_blind_to_frame_order():
    """The decoder then attends over the set of T*L tokens; the declaration says so."""
    options = {"temporal_conv": False, "temporal_pos_embed": False, "temporal_cross_attention": False}
    assert make_method_config("evl").frames_interact and not make_method_config("evl", **options).frames_interact
    torch.manual_seed(0)
    model = tiny_model("evl", num_frames=5, **options).double().eval()
    randomise_trainable(model, torch.Generator().manual_seed(1))
    clip = video(frames=5, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(model(clip.flip(2)), model(clip), rtol=0, atol=1e-10)


def test_flops_add_the_decoder_to_the_image_model():
    """fvcore counts every op of the decoder (attention maps and offset sums as einsum/matmul)."""
    from bench.counting import count_model
    torch.manual_seed(0)
    evl = count_model(tiny_model("evl"), 4, 32)
    plain = count_model(tiny_model("linear_probe"), 4, 32)
    assert evl.unsupported_ops == {} and evl.gflops_per_view > plain.gflops_per_view


@pytest.mark.parametrize("options,message", [
    ({"num_layers": 0}, r"evl: option num_layers=0 is invalid: expected an int >= 1"),
    ({"mlp_dropout": 1.0}, r"evl: option mlp_dropout=1.0 is invalid: expected a probability in \[0, 1\)"),
    ({"mlp_ratio": 0}, r"evl: option mlp_ratio=0 is invalid: expected a number > 0"),
    ({"temporal_conv": "yes"}, r"evl: option temporal_conv='yes' is invalid: expected true or false"),
])
def test_invalid_options(options, message):
    with pytest.raises(MethodConfigError, match=message):
        make_method_config("evl", **options)


def test_built_for_its_number_of_frames():
    with pytest.raises(ValueError, match="built for 4 frames but got clips of 6"):
        tiny_model("evl")(video(frames=6))


# -- GPU ----------------------------------------------------------------------------------------------

@pytest.mark.gpu
def test_gpu_fast_paths_keep_the_function_at_bf16_tolerance():
    """The engine's fast paths on EVL at the paper's architecture (fused QuickGELU in the decoder too,
    the decoder's temporal conv as the Triton kernel, the backbone's attention and patch embedding
    layouts, frozen weights in bf16) against float64: outputs and every trainable gradient."""
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = build_model("evl", "clip_vit_b16", 400, 8, random_init=True)
    perturb_trainable(model, torch.Generator().manual_seed(1))
    assert_gpu_fast_paths_as_accurate_as_plain_bf16(
        model, ["fused_quick_gelu", "packed_attention_grads", "matmul_patch_embed", "fast_adapters"])
