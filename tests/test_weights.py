"""Loading pre-trained weights through the real reading code, in every supported format.

The source models are built by open_clip and timm themselves (tiny, random), so the key mapping is
checked against independent implementations: loaded tensors must be identical and the encoder must
compute the same image features as the library model it was loaded from.
"""
from __future__ import annotations

import copy
import warnings
from pathlib import Path

import pytest
import timm
import torch
from open_clip.model import CLIP
from safetensors.torch import save_file

from methods import (
    BackboneConfig,
    WeightsError,
    build_model,
    check_weights,
    export_st_adapter_checkpoint,
    get_backbone_config,
    load_init,
    register_backbone,
)
from methods.weights import openai_to_timm_key, to_openai_visual_state_dict

TINY = "vit_tiny_test"  # CLIP-style: 32 px, patch 8, width 64, 4 blocks, 4 heads
TIMM_TINY = BackboneConfig("vit_tiny_test_timm", 32, 8, 64, 4, 4, act="gelu", pre_norm=False,
                           norm_eps=1e-6, patch_bias=True)
OPENAI_HF_REPO = "models--timm--vit_base_patch16_clip_224.openai"


@pytest.fixture(scope="module")
def clip() -> CLIP:
    torch.manual_seed(0)
    model = CLIP(embed_dim=32, quick_gelu=True,
                 vision_cfg=dict(image_size=32, patch_size=8, width=64, layers=4, head_width=16),
                 text_cfg=dict(context_length=8, vocab_size=100, width=32, heads=2, layers=1))
    with torch.no_grad():  # non-trivial LayerNorm affine parameters, so a swapped norm shows
        for name, param in model.named_parameters():
            if "ln" in name:
                param.add_(torch.randn_like(param) * 0.1)
    return model.eval()


@pytest.fixture(scope="module")
def timm_vit() -> timm.models.VisionTransformer:
    torch.manual_seed(1)
    return timm.models.VisionTransformer(img_size=32, patch_size=8, embed_dim=64, depth=4, num_heads=4,
                                         num_classes=7).eval()


def images(n: int = 3) -> torch.Tensor:
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(5))


def build(weights, method: str = "linear_probe", backbone: str = TINY, **options):
    """The model with ``weights`` loaded, after bench.run's cheap check of the file (it must agree)."""
    check_weights(weights, get_backbone_config(backbone))
    return build_model(method, backbone, num_classes=5, num_frames=2, weights=weights,
                       method_options=options)


def assert_clip_loaded(model, clip: CLIP, dtype=torch.float32) -> None:
    """Every visual tensor arrived unchanged, and the encoder computes CLIP's image features."""
    encoder_state = model.encoder.state_dict()
    for key, value in clip.visual.state_dict().items():
        if key == "proj":
            continue
        ours = openai_to_timm_key(key)
        expected = value.to(dtype).float().reshape(encoder_state[ours].shape)
        assert torch.equal(encoder_state[ours], expected), key
    if dtype == torch.float32:
        x = images()
        with torch.no_grad():
            ours = model.encoder.norm(model.encoder(x, num_frames=1)) @ clip.visual.proj
            torch.testing.assert_close(ours, clip.encode_image(x), rtol=1e-5, atol=1e-5)


def test_open_clip_state_dict(clip, tmp_path):
    path = tmp_path / "clip.pt"
    torch.save(clip.state_dict(), path)
    assert_clip_loaded(build(path), clip)


def test_open_clip_training_checkpoint_with_module_prefix(clip, tmp_path):
    path = tmp_path / "epoch_32.pt"
    torch.save({"epoch": 32, "name": "run", "state_dict": {f"module.{k}": v for k, v in
                                                           clip.state_dict().items()}}, path)
    assert_clip_loaded(build(path), clip)


def test_open_clip_safetensors(clip, tmp_path):
    path = tmp_path / "open_clip_model.safetensors"
    save_file({k: v.contiguous() for k, v in clip.state_dict().items()}, path)
    assert_clip_loaded(build(path), clip)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_openai_torchscript_file(clip, tmp_path, dtype):
    """OpenAI's ViT-B-16.pt is a TorchScript archive of the whole CLIP, in fp16."""

    class OpenAIStyleCLIP(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            whole = copy.deepcopy(clip)  # tracing shares the tensors; .to(dtype) must not reach clip
            self.visual = whole.visual
            self.token_embedding = whole.token_embedding
            self.logit_scale = whole.logit_scale

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.visual(x)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit is deprecated; OpenAI's files still use it
        scripted = torch.jit.trace(OpenAIStyleCLIP().eval(), images(1), check_trace=False)
        path = tmp_path / "ViT-B-16.pt"
        torch.jit.save(scripted.to(dtype), str(path))
    assert_clip_loaded(build(path), clip, dtype)


def make_hf_cache(root: Path, filename: str, state: dict) -> Path:
    """The layout huggingface_hub leaves on disk: refs/main -> snapshots/<commit>/<file>."""
    repo = root / OPENAI_HF_REPO
    commit = "0123456789abcdef0123456789abcdef01234567"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    if filename.endswith(".safetensors"):
        save_file({k: v.contiguous() for k, v in state.items()}, snapshot / filename)
    else:
        torch.save(state, snapshot / filename)
    return snapshot / filename


@pytest.mark.parametrize("filename", ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"])
def test_open_clip_tag_from_local_cache(clip, tmp_path, monkeypatch, filename):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HUGGINGFACE_HUB_CACHE", raising=False)
    make_hf_cache(tmp_path / "hf" / "hub", filename, clip.state_dict())
    assert_clip_loaded(build("open_clip:ViT-B-16/openai"), clip)


def test_open_clip_tag_not_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty"))
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(WeightsError, match=r"'open_clip:ViT-B-16/openai': not in the local cache \(looked "
                                           r"for timm/vit_base_patch16_clip_224\.openai/open_clip_model"
                                           r"\.safetensors in .*open_clip\.create_model\('ViT-B-16', "
                                           r"pretrained='openai'\)"):
        build("open_clip:ViT-B-16/openai")


def test_open_clip_tag_unknown():
    with pytest.raises(WeightsError, match=r"'open_clip:ViT-B-16/openia': not an open_clip pretrained "
                                           r"tag; expected 'open_clip:MODEL/TAG', tags of ViT-B-16: \["
                                           r"'openai'"):
        build("open_clip:ViT-B-16/openia")


def test_open_clip_tag_activation_must_match_backbone():
    with pytest.raises(WeightsError, match=r"laion2b_s34b_b88k' were trained with gelu but backbone "
                                           r"'vit_tiny_test' uses quick_gelu; choose a backbone with "
                                           r"act='gelu'"):
        build("open_clip:ViT-B-16/laion2b_s34b_b88k")


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_timm_checkpoint(timm_vit, tmp_path, suffix):
    register_backbone(TIMM_TINY)
    path = tmp_path / f"vit_tiny{suffix}"
    state = timm_vit.state_dict()
    save_file(state, path) if suffix == ".safetensors" else torch.save(state, path)
    model = build(path, backbone=TIMM_TINY.name)
    encoder_state = model.encoder.state_dict()
    for key, value in state.items():
        if not key.startswith("head."):
            assert torch.equal(encoder_state[key], value), key
    x = images()
    with torch.no_grad():
        torch.testing.assert_close(model.encoder.norm(model.encoder(x, num_frames=1)),
                                   timm_vit.forward_features(x)[:, 0], rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------ released ST-Adapter checkpoints

def random_st_adapter(options: dict):
    torch.manual_seed(3)
    model = build_model("st_adapter", TINY, num_classes=5, num_frames=2, random_init=True,
                        method_options=options)
    with torch.no_grad():
        for param in model.parameters():
            param.normal_(0, 0.2)
    return model.eval()


def test_released_layout_round_trip(clip, tmp_path):
    options = {"width": 16, "positions": ("pre_attn", "pre_mlp"), "num_layers": 3}
    original = random_st_adapter(options)
    exported = export_st_adapter_checkpoint(original)
    # the released layout: OpenAI visual names without "visual." (as open_clip writes them), adapters
    # per block and slot, the classifier as fc; Conv3d-shaped temporal kernels
    adapter_keys = {f"transformer.resblocks.{i}.adapter_{pos}.{layer}.{kind}" for i in (1, 2, 3)
                    for pos in ("pre_attn", "pre_mlp") for layer in ("fc1", "conv", "fc2")
                    for kind in ("weight", "bias")}
    backbone_keys = set(clip.visual.state_dict()) - {"proj"}
    assert set(exported) == backbone_keys | adapter_keys | {"fc.weight", "fc.bias"}
    assert exported["transformer.resblocks.2.adapter_pre_attn.conv.weight"].shape == (16, 1, 3, 1, 1)
    assert exported["class_embedding"].shape == (64,)

    path = tmp_path / "checkpoint-best.pth"  # as saved by the reference training script
    torch.save({"model": {f"module.{k}": v for k, v in exported.items()}, "next_epoch": 12}, path)
    loaded = build(path, method="st_adapter", **options).eval()
    reference = original.state_dict()
    assert set(loaded.state_dict()) == set(reference)
    for key, value in loaded.state_dict().items():
        assert torch.equal(value, reference[key]), key
    clip_ = torch.randn(2, 3, 2, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(clip_), original(clip_))


def test_released_layout_needs_the_matching_preset(tmp_path):
    path = tmp_path / "adapter24.pth"
    both = {"width": 16, "positions": "pre_attn,pre_mlp"}
    torch.save(export_st_adapter_checkpoint(random_st_adapter(both)), path)
    with pytest.raises(WeightsError, match=r"does not match method 'st_adapter' .* Not used by the model: "
                                           r"'transformer\.resblocks\.0\.adapter_pre_attn\.conv\.bias' "
                                           r"\(-> 'encoder\.pre_attn\.0\.conv\.bias'\).*preset 24x384"):
        build(path, method="st_adapter", width=16, positions="pre_mlp")
    with pytest.raises(WeightsError, match=r"'fc\.bias' \(-> 'head\.fc\.bias'\) has shape \(5,\) but "
                                           r"method 'st_adapter' .* expects \(7,\), 'fc\.weight' \(-> "
                                           r"'head\.fc\.weight'\) has shape \(5, 64\) but .* expects \(7, 64\)"):
        build_model("st_adapter", TINY, num_classes=7, num_frames=2, weights=path,
                    method_options=both)


def test_open_clip_export_round_trip(tmp_path):
    """A backbone written in OpenAI layout loads back into any method with identical tensors."""
    original = random_st_adapter({"width": 16})
    path = tmp_path / "visual.pt"
    torch.save({f"visual.{k}": v for k, v in to_openai_visual_state_dict(original.encoder).items()}, path)
    loaded = build(path, method="partial_ft")
    for key, value in loaded.encoder.state_dict().items():
        assert torch.equal(value, original.encoder.state_dict()[key]), key


# ------------------------------------------------------------------------------------- bad input

def test_missing_file(tmp_path):
    with pytest.raises(WeightsError, match=r"weights file '.*nowhere\.pt' does not exist\. Expected an "
                                           r"OpenAI CLIP TorchScript file"):
        build(tmp_path / "nowhere.pt")


def test_wrong_shape_names_the_key_and_both_shapes(clip, tmp_path):
    state = dict(clip.state_dict())
    state["visual.ln_post.weight"] = torch.ones(65)
    path = tmp_path / "bad.pt"
    torch.save(state, path)
    with pytest.raises(WeightsError, match=r"'ln_post\.weight' \(-> 'norm\.weight'\) has shape \(65,\) "
                                           r"but backbone 'vit_tiny_test' expects \(64,\)"):
        build(path)


def test_wrong_architecture(clip, tmp_path):
    path = tmp_path / "clip.pt"
    torch.save(clip.state_dict(), path)
    register_backbone(BackboneConfig("vit_tiny_test_wide", 32, 8, 96, 4, 4))
    with pytest.raises(WeightsError, match=r"'class_embedding' \(-> 'cls_token'\) has shape \(64,\) "
                                           r"\[\(1, 1, 64\) here\] but backbone 'vit_tiny_test_wide' "
                                           r"expects \(1, 1, 96\), 'conv1\.weight' .* "
                                           rf"\({len(clip.visual.state_dict()) - 1} in all\)"):
        build(path, backbone="vit_tiny_test_wide")


def test_missing_and_unexpected_backbone_keys(clip, tmp_path):
    state = dict(clip.state_dict())
    del state["visual.ln_pre.bias"]
    state["visual.attn_pool.query"] = torch.zeros(4, 64)
    path = tmp_path / "partial.pt"
    torch.save(state, path)
    with pytest.raises(WeightsError, match=r"does not match backbone 'vit_tiny_test'\. Missing from the "
                                           r"file: 'ln_pre\.bias' \(-> 'norm_pre\.bias'\)\. Not used by "
                                           r"the model: 'attn_pool\.query'\."):
        build(path)


@pytest.mark.parametrize("content,message", [
    (b"not a checkpoint at all", r"could not be read \(UnpicklingError"),
    ({"weights": torch.zeros(3)}, r"unrecognised key layout \(first keys: \['weights'\]\)"),
    ({"optimizer": {"lr": 0.1}}, r"no state dict found \(top-level keys: \['optimizer'\]\)"),
    ([1, 2, 3], r"holds a list, not a state dict"),
])
def test_unreadable_files(tmp_path, content, message):
    path = tmp_path / "weights.pt"
    path.write_bytes(content) if isinstance(content, bytes) else torch.save(content, path)
    with pytest.raises(WeightsError, match=message):
        build(path)


def test_openai_torchscript_file_refuses_a_gelu_backbone(clip, tmp_path):
    register_backbone(BackboneConfig("vit_tiny_test_gelu_clip", 32, 8, 64, 4, 4, act="gelu"))

    class Visual(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.visual = copy.deepcopy(clip).visual

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.visual(x)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        path = tmp_path / "ViT-B-16.pt"
        torch.jit.save(torch.jit.trace(Visual().eval(), images(1), check_trace=False), str(path))
    with pytest.raises(WeightsError, match="trained with quick_gelu but backbone 'vit_tiny_test_gelu_clip' "
                                           "uses gelu"):
        build(path, backbone="vit_tiny_test_gelu_clip")
    assert build(path).encoder.config.act == "quick_gelu"  # the matching backbone loads it


def _reference_save_model(model, path: Path) -> None:
    """What the reference training code's save_model writes: the state dict without the frozen
    parameters (released key names), with optimizer and schedule state beside it."""
    released = export_st_adapter_checkpoint(model)
    frozen = set(to_openai_visual_state_dict(model.encoder))
    torch.save({"model": {k: v for k, v in released.items() if k not in frozen},
                "optimizer": {"state": {}, "param_groups": []}, "lr_sched": {"last_epoch": 11},
                "loss_scaler": {"scale": 65536.0}, "next_epoch": 12}, path)


def test_init_loads_a_reference_save_model_checkpoint_on_the_backbone(tmp_path):
    options = {"width": 16, "positions": ("pre_attn", "pre_mlp")}
    trained = random_st_adapter(options)
    backbone = tmp_path / "backbone.pt"
    torch.save(to_openai_visual_state_dict(trained.encoder), backbone)
    checkpoint = tmp_path / "checkpoint-11.pth"
    _reference_save_model(trained, checkpoint)
    fresh = build(backbone, method="st_adapter", **options).eval()
    assert load_init(fresh, checkpoint) == "reference save_model checkpoint"
    video = torch.randn(2, 3, 2, 32, 32, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        assert torch.equal(fresh(video), trained(video))


def test_init_must_cover_the_trainable_set_exactly(tmp_path):
    options = {"width": 16, "positions": "pre_mlp"}
    trained = random_st_adapter(options)
    state = {name: p.detach().clone() for name, p in trained.trainable_named_parameters()}
    cases = {"frozen": {**state, "encoder.blocks.0.attn.qkv.weight": torch.zeros(192, 64)},
             "missing": {k: v for k, v in state.items() if not k.startswith("encoder.pre_mlp.3.")}}
    for case, content in cases.items():
        path = tmp_path / f"{case}.pt"
        torch.save({"trainable": content, "optimizer": {}}, path)
        with pytest.raises(WeightsError) as err:
            load_init(build_model("st_adapter", TINY, 5, 2, random_init=True, method_options=options), path)
        message = str(err.value)
        if case == "frozen":
            assert "Frozen parameters in the file: encoder.blocks.0.attn.qkv.weight" in message
        else:
            assert "Trainable parameters the file lacks: encoder.pre_mlp.3.conv.bias" in message
