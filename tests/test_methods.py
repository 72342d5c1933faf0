"""Every registered method, held to the same interface and to what it declares: identity at
initialisation (or not), frame-order behaviour, its trainable set, its state-dict keys and the
loaders, half precision. Each method's exact counts and own behaviour live in tests/test_<method>.py.
The methods are taken from the registry, so a new method file is tested here without edits."""
from __future__ import annotations

import re

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
    get_method,
    list_methods,
    make_method_config,
)
from methods.weights import to_openai_visual_state_dict
from tests.method_helpers import HEAD, TINY, randomise_trainable, tiny_model, tiny_options, video

METHODS = list_methods()


def block_of(name: str) -> int | None:
    """The block index in a parameter name (``encoder.<site>.<i>.`` or ``encoder.blocks.<i>.``)."""
    match = re.match(r"encoder\.\w+\.(\d+)\.", name)
    return None if match is None else int(match[1])


def test_registry_has_the_package_methods():
    assert METHODS == sorted(METHODS) and {"linear_probe", "full_ft", "st_adapter"} <= set(METHODS)
    assert len(set(METHODS)) == len(METHODS)


@pytest.mark.parametrize("method", METHODS)
def test_init_matches_the_linear_probe_as_declared(method):
    """Methods that declare ``starts_as_image_model`` give exactly the linear probe's logits when the
    probe's backbone and head are loaded into them; the others give different logits."""
    torch.manual_seed(0)
    probe = tiny_model("linear_probe").eval()
    model = tiny_model(method).eval()
    missing, unexpected = model.load_state_dict(probe.state_dict(), strict=False)
    assert not unexpected and set(missing) == model.added_state_keys() - HEAD
    clip = video()
    with torch.no_grad():
        same = torch.equal(model(clip), probe(clip))
    assert same == model.method_config.starts_as_image_model


@pytest.mark.parametrize("method", METHODS)
def test_frame_order_as_declared(method):
    """Methods whose frames never interact are exactly invariant to frame order (1e-10 in float64);
    the others change by orders of magnitude more when the frames are reversed."""
    torch.manual_seed(1)
    model = tiny_model(method, num_frames=5).double().eval()
    randomise_trainable(model, torch.Generator().manual_seed(2))
    clip = video(frames=5, dtype=torch.float64)
    with torch.no_grad():
        logits = model(clip)
        permuted = model(clip[:, :, torch.tensor([3, 0, 4, 1, 2])])
        reversed_ = model(clip.flip(2))
    if model.method_config.frames_interact:
        assert (reversed_ - logits).abs().max() > 1e-6
    else:
        torch.testing.assert_close(permuted, logits, rtol=0, atol=1e-10)
        torch.testing.assert_close(reversed_, logits, rtol=0, atol=1e-10)


@pytest.mark.parametrize("method", METHODS)
def test_training_step_updates_exactly_the_declared_set(method):
    torch.manual_seed(0)
    model = tiny_model(method)
    randomise_trainable(model, torch.Generator().manual_seed(1))
    declared = dict(model.trainable_named_parameters())
    assert HEAD <= set(declared)
    assert {n for n, p in model.named_parameters() if p.requires_grad} == set(declared)
    assert model.parameter_counts()[0] == sum(p.numel() for p in declared.values())
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    optimizer = torch.optim.SGD(list(declared.values()), lr=0.1)
    loss = nn.functional.cross_entropy(model(video()), torch.tensor([1, 3]))
    loss.backward()
    optimizer.step()
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed <= set(declared)
    # A module in the last block that only touches patch tokens (ST-Adapter's pre-MLP adapter) gets
    # no gradient: nothing reads those tokens afterwards (the head takes CLS), in the reference too.
    unread = set(declared) - changed
    assert all(block_of(n) == model.encoder.depth - 1 for n in unread), sorted(unread)
    assert model(video()).shape == (2, 5)


@pytest.mark.parametrize("method", METHODS)
def test_state_dict_round_trip_and_key_ownership(method, tmp_path):
    """The state dict is the backbone's keys plus the method's own: a saved model loads back
    strictly into a fresh one, and the backbone alone, written in OpenAI layout, loads through the
    real weights reader into the method without asking the file for any of the method's keys."""
    torch.manual_seed(0)
    model = tiny_model(method).eval()
    randomise_trainable(model, torch.Generator().manual_seed(1))
    keys = set(model.state_dict())
    backbone = {f"encoder.{k}" for k in model.encoder.backbone_state_keys()}
    added = model.added_state_keys()
    assert backbone | added == keys and not backbone & added and HEAD <= added
    assert backbone == {f"encoder.{k}" for k in tiny_model("linear_probe").encoder.state_dict()}

    path = tmp_path / "model.pt"
    torch.save(model.state_dict(), path)
    torch.manual_seed(1)
    fresh = tiny_model(method).eval()
    fresh.load_state_dict(torch.load(path, weights_only=True))
    clip = video()
    with torch.no_grad():
        assert torch.equal(fresh(clip), model(clip))

    visual = tmp_path / "visual.pt"
    torch.save({f"visual.{k}": v for k, v in to_openai_visual_state_dict(model.encoder).items()}, visual)
    loaded = build_model(method, TINY, num_classes=5, num_frames=4, weights=visual,
                         method_options=tiny_options(method))
    state, reference = loaded.state_dict(), model.state_dict()
    assert all(torch.equal(state[k], reference[k]) for k in backbone)


@pytest.mark.parametrize("method", METHODS)
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


@pytest.mark.parametrize("method", METHODS)
def test_declared_recipe_options_build(method):
    """Every recipe family's options and every preset make a valid config."""
    spec = get_method(method)
    for options in [*spec.recipe_options.values(), *({"preset": p} for p in spec.presets)]:
        assert make_method_config(method, **options).method == method


# ------------------------------------------------------------------------------ shared parts

def test_clip_vit_b16_building_blocks_match_design():
    with torch.device("meta"):
        encoder = build_model("linear_probe", "clip_vit_b16", 400, 8, random_init=True).encoder
    assert sum(p.numel() for p in encoder.parameters()) == 85_799_424  # visual tower, no projection
    assert sum(p.numel() for p in encoder.blocks[0].parameters()) == 7_087_872


def test_backbone_variants_follow_their_pretraining():
    with torch.device("meta"):
        clip = build_model("linear_probe", "clip_vit_b16", 10, 8, random_init=True).encoder
        in21k = build_model("linear_probe", "vit_b16_in21k", 10, 8, random_init=True).encoder
    assert isinstance(clip.blocks[0].mlp.act, QuickGELU) and clip.norm.eps == 1e-5
    assert clip.patch_embed.proj.bias is None and isinstance(clip.norm_pre, nn.LayerNorm)
    assert isinstance(in21k.blocks[0].mlp.act, nn.GELU) and in21k.norm.eps == 1e-6
    assert in21k.patch_embed.proj.bias is not None and isinstance(in21k.norm_pre, nn.Identity)
    assert get_backbone_config("clip_vit_l14").width == 1024


def test_head_init_and_dropout():
    model = tiny_model("linear_probe")
    assert model.head.dropout.p == 0.5 and not model.head.fc.bias.any()
    assert 0.01 < model.head.fc.weight.std() < 0.03


def test_final_norm_per_frame_is_the_mean_of_normalised_frames():
    torch.manual_seed(0)
    model = tiny_model("linear_probe").eval()
    clip = video()
    frames = clip.transpose(1, 2).flatten(0, 1)
    with torch.no_grad():
        cls = model.encoder(frames, 4).view(2, 4, -1)
        assert torch.equal(model.features(clip), model.encoder.norm(cls.mean(1)))
        model.final_norm = "per_frame"
        assert torch.equal(model.features(clip), model.encoder.norm(cls).mean(1))


# ------------------------------------------------------------------------------------ bad input

@pytest.mark.parametrize("method", [m for m in METHODS
                                    if "num_layers" in get_method(m).config_cls.__dataclass_fields__])
def test_more_layers_than_blocks(method):
    with pytest.raises(MethodConfigError, match=rf"{method}: option num_layers=5 is invalid: backbone "
                                                 r"'vit_tiny_test' has only 4 blocks"):
        build_model(method, TINY, 5, 4, random_init=True, method_options={"num_layers": 5})


MERGING = [m for m in METHODS if get_method(m).merge is not None]


def test_the_methods_that_fold_into_the_backbone_declare_a_merge():
    """The report counts a merging method's deployed form (bench.reporting.costs), so the declaration
    must be there: LoRA and ZeroI2V fold into the frozen weights, nothing else does."""
    assert {"lora", "zeroi2v"} <= set(MERGING)


@pytest.mark.parametrize("method", MERGING)
def test_a_declared_merge_keeps_the_function_and_leaves_no_trained_module_in_the_backbone(method):
    torch.manual_seed(0)
    model = tiny_model(method).double().eval()
    randomise_trainable(model, torch.Generator().manual_seed(1))
    clip = video(dtype=torch.float64)
    with torch.no_grad():
        before = model(clip)
        merged = get_method(method).merge(model)
        torch.testing.assert_close(merged(clip), before, rtol=1e-12, atol=1e-12)
    trained_in_blocks = [n for n, _ in merged.trainable_named_parameters() if n.startswith("encoder.blocks.")]
    assert trained_in_blocks == []


def test_a_merge_that_is_not_a_function_is_refused():
    from methods.base import MethodRegistryError
    from methods.registry import register_method

    with pytest.raises(MethodRegistryError, match=r"method 'merge_typo': merge='merge' must be a function"):
        register_method("merge_typo", type("MergeTypoConfig", (get_method("linear_probe").config_cls,), {}),
                        merge="merge")(lambda model, cfg: [model.head])


def test_unknown_method():
    with pytest.raises(UnknownMethodError, match=r"unknown method 'st-adapter'; choose one of "
                                                 r".*'st_adapter'.*load_method_file"):
        build_model("st-adapter", TINY, 5, 4, random_init=True)


@pytest.mark.parametrize("options,message", [
    ({"preset": "48x384"}, r"st_adapter: unknown preset '48x384'; presets: \['12x384', "),
    ({"widht": 8}, r"st_adapter: unknown option\(s\) \['widht'\]"),
])
def test_unknown_preset_or_option(options, message):
    with pytest.raises(MethodConfigError, match=message):
        make_method_config("st_adapter", **options)


def test_weights_are_required_unless_random_init_is_asked_for():
    with pytest.raises(WeightsError, match=r"no weights given for backbone 'vit_tiny_test': pass weights="):
        build_model("linear_probe", TINY, 5, 4)


def test_unknown_backbone():
    with pytest.raises(BackboneError, match=r"unknown backbone 'vit_huge'; known backbones: \["):
        build_model("linear_probe", "vit_huge", 5, 4, random_init=True)
