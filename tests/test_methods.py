"""The PETL methods: exact parameter counts (DESIGN.md section 3), identity at initialisation, the
temporal conv against nn.Conv3d, frame-order behaviour, trainable sets and bad-input errors."""
from __future__ import annotations

import pytest
import torch
from timm.layers import QuickGELU
from torch import nn

from methods import (
    BackboneError,
    MethodConfigError,
    UnknownMethodError,
    WeightsError,
    build_model,
    get_backbone_config,
    list_methods,
    make_method_config,
)
from methods.temporal_conv import TemporalDepthwiseConv, temporal_depthwise_conv

TINY = "vit_tiny_test"
TINY_OPTIONS = {  # every method on the tiny backbone, with adapters narrow enough to stay fast
    "linear_probe": {},
    "full_ft": {},
    "partial_ft": {"num_blocks": 2},
    "adapter": {"width": 16},
    "prompt_tuning": {"num_tokens": 3},
    "st_adapter": {"width": 16, "positions": ("pre_attn", "pre_mlp")},
    "temporal_attention": {},
}
FRAME_ORDER_BLIND = ("linear_probe", "full_ft", "partial_ft", "adapter", "prompt_tuning")
TEMPORAL = ("st_adapter", "temporal_attention")

# DESIGN.md section 3: trainable parameters on CLIP ViT-B/16 for (K400: 400, SSv2: 174) classes.
DESIGN_COUNTS = [
    ("linear_probe", {}, 307_600, 133_806),
    ("full_ft", {}, 86_107_024, 85_933_230),
    ("partial_ft", {"num_blocks": 1}, 7_397_008, 7_223_214),
    ("st_adapter", {"preset": "12x384"}, 7_417_744, 7_243_950),
    ("st_adapter", {"preset": "24x384"}, 14_527_888, 14_354_094),
    ("adapter", {"preset": "12x384", "kernel_size": 1}, 7_408_528, 7_234_734),
    ("adapter", {"preset": "12x384"}, 7_399_312, 7_225_518),
    ("prompt_tuning", {"num_tokens": 50, "deep": True}, 768_400, 594_606),
    ("temporal_attention", {}, 35_767_696, 35_593_902),
]


def tiny_model(method: str, num_frames: int = 4, **overrides) -> nn.Module:
    options = {**TINY_OPTIONS[method], **overrides}
    return build_model(method, TINY, num_classes=5, num_frames=num_frames, random_init=True,
                       method_options=options)


def randomise_trainable(model: nn.Module, generator: torch.Generator) -> None:
    """Give the zero-initialised parts (adapter convs, temporal_fc, embeddings...) real values."""
    with torch.no_grad():
        for _, param in model.trainable_named_parameters():
            param.copy_(torch.randn(param.shape, generator=generator, dtype=param.dtype) * 0.2)


def video(batch: int = 2, frames: int = 4, seed: int = 0, dtype=torch.float32) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 3, frames, 32, 32, generator=g, dtype=dtype)


def test_registry_lists_every_method():
    assert list_methods() == sorted(TINY_OPTIONS)


@pytest.mark.parametrize("num_classes", [400, 174])
@pytest.mark.parametrize("method,options,k400,ssv2", DESIGN_COUNTS)
def test_trainable_counts_match_design_on_clip_vit_b16(method, options, k400, ssv2, num_classes):
    with torch.device("meta"):
        model = build_model(method, "clip_vit_b16", num_classes, num_frames=8, random_init=True,
                            method_options=options)
    trainable, total = model.parameter_counts()
    assert trainable == (k400 if num_classes == 400 else ssv2)
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == trainable


def test_clip_vit_b16_building_blocks_match_design():
    with torch.device("meta"):
        model = build_model("linear_probe", "clip_vit_b16", 400, 8, random_init=True)
        adapter = build_model("st_adapter", "clip_vit_b16", 400, 8, random_init=True)
    encoder = model.encoder
    assert sum(p.numel() for p in encoder.parameters()) == 85_799_424  # visual tower, no projection
    assert sum(p.numel() for p in encoder.blocks[0].parameters()) == 7_087_872
    assert sum(p.numel() for p in adapter.encoder.pre_mlp[0].parameters()) == 592_512
    assert adapter.encoder.pre_mlp[0].conv.weight.shape == (384, 1, 3, 1, 1)


def test_backbone_variants_follow_their_pretraining():
    with torch.device("meta"):
        clip = build_model("linear_probe", "clip_vit_b16", 10, 8, random_init=True).encoder
        in21k = build_model("linear_probe", "vit_b16_in21k", 10, 8, random_init=True).encoder
    assert isinstance(clip.blocks[0].mlp.act, QuickGELU) and clip.norm.eps == 1e-5
    assert clip.patch_embed.proj.bias is None and isinstance(clip.norm_pre, nn.LayerNorm)
    assert isinstance(in21k.blocks[0].mlp.act, nn.GELU) and in21k.norm.eps == 1e-6
    assert in21k.patch_embed.proj.bias is not None and isinstance(in21k.norm_pre, nn.Identity)
    assert get_backbone_config("clip_vit_l14").width == 1024


@pytest.mark.parametrize("method,options", [
    ("st_adapter", {}), ("st_adapter", {"preset": "24x384", "width": 16}),
    ("adapter", {}), ("adapter", {"kernel_size": 1}), ("temporal_attention", {}),
])
def test_identity_at_init_gives_linear_probe_logits(method, options):
    torch.manual_seed(0)
    probe = tiny_model("linear_probe").eval()
    model = tiny_model(method, **options).eval()
    missing, unexpected = model.load_state_dict(probe.state_dict(), strict=False)
    assert not unexpected and set(missing) == model.added_state_keys() - {"head.fc.weight", "head.fc.bias"}
    clip = video()
    with torch.no_grad():
        assert torch.equal(model(clip), probe(clip))


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


@pytest.mark.parametrize("method", FRAME_ORDER_BLIND + TEMPORAL)
def test_frame_order(method):
    torch.manual_seed(1)
    model = tiny_model(method, num_frames=5).double().eval()
    randomise_trainable(model, torch.Generator().manual_seed(2))
    clip = video(frames=5, dtype=torch.float64)
    with torch.no_grad():
        logits = model(clip)
        permuted = model(clip[:, :, torch.tensor([3, 0, 4, 1, 2])])
        reversed_ = model(clip.flip(2))
    if method in FRAME_ORDER_BLIND:
        torch.testing.assert_close(permuted, logits, rtol=0, atol=1e-10)
        torch.testing.assert_close(reversed_, logits, rtol=0, atol=1e-10)
    else:  # invariant methods agree to 1e-10 in float64; a real change is orders of magnitude larger
        assert (reversed_ - logits).abs().max() > 1e-6


@pytest.mark.parametrize("method", sorted(TINY_OPTIONS))
def test_training_step_updates_exactly_the_declared_set(method):
    torch.manual_seed(0)
    model = tiny_model(method)
    randomise_trainable(model, torch.Generator().manual_seed(1))
    declared = dict(model.trainable_named_parameters())
    assert declared and {n for n, p in model.named_parameters() if p.requires_grad} == set(declared)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    optimizer = torch.optim.SGD([p for p in declared.values()], lr=0.1)
    loss = nn.functional.cross_entropy(model(video()), torch.tensor([1, 3]))
    loss.backward()
    optimizer.step()
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    # A pre-MLP module in the last block only touches patch tokens, which nothing reads afterwards
    # (the head takes CLS): it gets no gradient, in the reference implementation too.
    unread = {n for n in declared if n.startswith(f"encoder.pre_mlp.{model.encoder.depth - 1}.")}
    assert changed == set(declared) - unread
    assert model(video()).shape == (2, 5)


@pytest.mark.parametrize("method", sorted(TINY_OPTIONS))
def test_half_precision_frozen_weights_under_autocast(method):
    """The recipe stores frozen weights in half precision and trains under autocast."""
    model = tiny_model(method)
    trainable = {id(p) for _, p in model.trainable_named_parameters()}
    for param in model.parameters():
        if id(param) not in trainable:
            param.data = param.data.to(torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(video())
    logits.float().sum().backward()
    assert logits.shape == (2, 5) and torch.isfinite(logits).all()
    assert all(p.grad is not None and p.grad.dtype == torch.float32
               for _, p in model.trainable_named_parameters() if p.grad is not None)
    assert model.head.fc.weight.grad is not None


def test_trainable_sets_are_what_each_method_declares():
    names = {m: {n for n, _ in tiny_model(m).trainable_named_parameters()} for m in TINY_OPTIONS}
    head = {"head.fc.weight", "head.fc.bias"}
    assert names["linear_probe"] == head
    backbone = {f"encoder.{k}" for k in tiny_model("full_ft").encoder.backbone_state_keys()}
    assert names["full_ft"] == head | backbone
    assert {n.split(".")[2] for n in names["partial_ft"] if n.startswith("encoder.blocks.")} == {"2", "3"}
    assert {n for n in names["partial_ft"] if not n.startswith("encoder.blocks.")} == head | {
        "encoder.norm.weight", "encoder.norm.bias"}
    for method in ("adapter", "st_adapter", "prompt_tuning", "temporal_attention"):
        assert all(n in head or n.startswith(("encoder.pre_attn.", "encoder.pre_mlp."))
                   for n in names[method]), method


def test_st_adapter_placement_and_init():
    model = tiny_model("st_adapter", positions="pre_mlp", num_layers=2)
    enc = model.encoder
    adapted = [i for i, slot in enumerate(enc.pre_mlp) if not isinstance(slot, nn.Identity)]
    assert adapted == [2, 3] and all(isinstance(s, nn.Identity) for s in enc.pre_attn)
    adapter = enc.pre_mlp[3]
    for zero in (adapter.conv.weight, adapter.conv.bias, adapter.fc1.bias, adapter.fc2.bias):
        assert not zero.any()
    assert adapter.fc1.weight.abs().sum() > 0 and adapter.fc2.weight.abs().sum() > 0
    assert isinstance(adapter.act, nn.Identity)


def test_st_adapter_leaves_cls_token_untouched():
    model = tiny_model("st_adapter")
    randomise_trainable(model, torch.Generator().manual_seed(0))
    adapter = model.encoder.pre_attn[0]
    x = torch.randn(6, 17, 64)
    out = adapter(x, 3)
    assert torch.equal(out[:, 0], x[:, 0]) and not torch.equal(out[:, 1:], x[:, 1:])


def test_plain_adapter_is_a_gelu_bottleneck_with_zero_up_projection():
    adapter = tiny_model("adapter").encoder.pre_mlp[0]
    assert adapter.conv is None and isinstance(adapter.act, nn.GELU)
    assert not adapter.fc2.weight.any() and not adapter.fc2.bias.any()
    k1 = tiny_model("adapter", kernel_size=1).encoder.pre_mlp[0]
    assert k1.conv.weight.shape == (16, 1, 1, 1, 1)
    assert torch.equal(k1.conv.weight, torch.ones_like(k1.conv.weight))  # identity in time


def test_prompt_tuning_tokens():
    deep = tiny_model("prompt_tuning", num_tokens=3, deep=True)
    shallow = tiny_model("prompt_tuning", num_tokens=3, deep=False)
    bound = (6 / (3 * 8 ** 2 + 64)) ** 0.5
    prompts = [slot.tokens for slot in deep.encoder.pre_attn]
    assert len(prompts) == 4 and all(p.shape == (1, 3, 64) and p.abs().max() <= bound for p in prompts)
    assert sum(not isinstance(s, nn.Identity) for s in shallow.encoder.pre_attn) == 1
    x = torch.randn(2, 17, 64)
    inserted = deep.encoder.pre_attn[0](x, 2)
    assert inserted.shape == (2, 20, 64) and torch.equal(inserted[:, 1:4], prompts[0].expand(2, -1, -1))
    replaced = deep.encoder.pre_attn[1](inserted, 2)
    assert replaced.shape == (2, 20, 64) and torch.equal(replaced[:, 1:4], prompts[1].expand(2, -1, -1))
    assert torch.equal(replaced[:, 4:], x[:, 1:]) and torch.equal(replaced[:, 0], x[:, 0])


def test_temporal_attention_starts_from_the_spatial_attention():
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


def test_head_init_and_dropout():
    model = tiny_model("linear_probe")
    assert model.head.dropout.p == 0.5 and not model.head.fc.bias.any()
    assert 0.01 < model.head.fc.weight.std() < 0.03


# ------------------------------------------------------------------------------------ bad input

def test_unknown_method():
    with pytest.raises(UnknownMethodError, match=r"unknown method 'st-adapter'; choose one of "
                                                 r".*'st_adapter'"):
        build_model("st-adapter", TINY, 5, 4, random_init=True)


@pytest.mark.parametrize("method,options,message", [
    ("st_adapter", {"kernel_size": 4}, r"st_adapter: option kernel_size=4 is invalid: expected an odd"),
    ("st_adapter", {"kernel_size": (3, 3, 3)}, r"kernel_size=\(3, 3, 3\) is invalid"),
    ("st_adapter", {"kernel_size": None}, r"kernel_size=None is invalid: ST-Adapter needs its temporal conv"),
    ("st_adapter", {"width": 0}, r"st_adapter: option width=0 is invalid: expected an int >= 1"),
    ("adapter", {"width": -3}, r"adapter: option width=-3 is invalid"),
    ("adapter", {"kernel_size": 3}, r"adapter: option kernel_size=3 is invalid: a plain adapter is "
                                    r"per-frame"),
    ("st_adapter", {"positions": ("pre_ffn",)}, r"option positions=\('pre_ffn',\) is invalid"),
    ("st_adapter", {"preset": "48x384"}, r"st_adapter: unknown preset '48x384'; presets: "
                                         r"\['12x384', '24x384'\]"),
    ("st_adapter", {"widht": 8}, r"st_adapter: unknown option\(s\) \['widht'\]"),
    ("prompt_tuning", {"num_tokens": 0}, r"prompt_tuning: option num_tokens=0 is invalid"),
    ("prompt_tuning", {"deep": "yes"}, r"prompt_tuning: option deep='yes' is invalid"),
    ("partial_ft", {"num_blocks": 0}, r"partial_ft: option num_blocks=0 is invalid"),
])
def test_invalid_options(method, options, message):
    with pytest.raises(MethodConfigError, match=message):
        make_method_config(method, **options)


@pytest.mark.parametrize("method,options", [
    ("st_adapter", {"num_layers": 5}), ("adapter", {"num_layers": 5}),
    ("temporal_attention", {"num_layers": 5}), ("partial_ft", {"num_blocks": 5}),
])
def test_more_layers_than_blocks(method, options):
    option = next(iter(options))
    with pytest.raises(MethodConfigError, match=rf"{method}: option {option}=5 is invalid: backbone "
                                                 r"'vit_tiny_test' has only 4 blocks"):
        build_model(method, TINY, 5, 4, random_init=True, method_options=options)


def test_weights_are_required_unless_random_init_is_asked_for():
    with pytest.raises(WeightsError, match=r"no weights given for backbone 'vit_tiny_test': pass weights="):
        build_model("linear_probe", TINY, 5, 4)


def test_unknown_backbone():
    with pytest.raises(BackboneError, match=r"unknown backbone 'vit_huge'; known backbones: \["):
        build_model("linear_probe", "vit_huge", 5, 4, random_init=True)
