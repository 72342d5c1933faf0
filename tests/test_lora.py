"""lora: low-rank updates of the frozen projections, exact trainable counts, identity at
initialisation, frame-order blindness, and merging (same logits in float64)."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from methods import MethodConfigError, build_model, make_method_config
from methods.backbone import WrappedLinear
from methods.lora import merge
from tests.method_helpers import (
    HEAD,
    TINY,
    assert_bench_eval_reproduces_merged,
    clip_b16_trainable,
    randomise_trainable,
    tiny_model,
    video,
)


@pytest.mark.parametrize("num_classes,head", [(400, 307_600), (174, 133_806)])
def test_trainable_counts_on_clip_vit_b16(num_classes, head):
    """One update of a 768 -> 768 projection at rank r: A r*768 + B 768*r = 1,536 r. qv_r8: 2 per
    block, 12 blocks: 24 * 1,536 * 8 = 294,912 (+ head: 602,512 K400, 428,718 SSv2). qkvo_r16: 48 *
    1,536 * 16 = 1,179,648 (1,487,248 / 1,313,454). The MLP at rank 8: fc1 768 -> 3072 and fc2
    3072 -> 768 are 8 * 3,840 each, 12 * 2 * 30,720 = 737,280 more."""
    assert clip_b16_trainable("lora", {"preset": "qv_r8"}, num_classes) == 294_912 + head
    assert clip_b16_trainable("lora", {"preset": "qkvo_r16"}, num_classes) == 1_179_648 + head
    assert clip_b16_trainable("lora", {"preset": "qv_r8", "targets": "q,v,fc1,fc2"}, num_classes) == (
        294_912 + 737_280 + head)
    assert {400: 602_512, 174: 428_718}[num_classes] == 294_912 + head
    assert {400: 1_487_248, 174: 1_313_454}[num_classes] == 1_179_648 + head


def test_updates_live_in_the_projections_under_their_own_prefix():
    model = tiny_model("lora", preset="qkvo_r16")
    names = {n for n, _ in model.trainable_named_parameters()}
    assert names - HEAD == {f"encoder.blocks.{i}.attn.{site}.lora.updates.{part}.{m}" for i in range(4)
                            for site, parts in (("qkv", "qkv"), ("proj", "o")) for part in parts for m in "ab"}
    backbone = model.encoder.backbone_state_keys()
    assert "blocks.0.attn.qkv.weight" in backbone and not any(".lora." in k for k in backbone)
    assert names <= model.added_state_keys()


def test_the_update_is_a_scaled_low_rank_product_on_the_targeted_parts():
    model = tiny_model("lora", rank=2, alpha=6.0, targets="q,v")
    randomise_trainable(model, torch.Generator().manual_seed(0))
    qkv = model.encoder.blocks[1].attn.qkv
    assert isinstance(qkv, WrappedLinear) and type(model.encoder.blocks[1].attn.proj) is nn.Linear
    updates = qkv.lora.updates
    assert updates["q"].a.shape == (2, 64) and updates["q"].b.shape == (64, 2) and "k" not in updates
    x = torch.randn(3, 5, 64, dtype=torch.float64)
    model.double()
    with torch.no_grad():
        out = qkv(x)
        plain = nn.functional.linear(x, qkv.weight, qkv.bias)
        scale = 6.0 / 2
        torch.testing.assert_close(out[..., :64], plain[..., :64] + scale * x @ updates["q"].a.T @ updates["q"].b.T)
        torch.testing.assert_close(out[..., 64:128], plain[..., 64:128], rtol=0, atol=0)
        torch.testing.assert_close(out[..., 128:], plain[..., 128:] + scale * x @ updates["v"].a.T @ updates["v"].b.T)


@pytest.mark.parametrize("preset", ["qv_r8", "qkvo_r16"])
def test_b_starts_at_zero_and_the_model_as_the_image_model(preset):
    torch.manual_seed(0)
    model = tiny_model("lora", preset=preset).eval()
    updates = [m for m in model.modules() if type(m).__name__ == "LowRankUpdate"]
    assert updates and all(not u.b.any() and u.a.abs().sum() > 0 for u in updates)
    probe = tiny_model("linear_probe").eval()
    model.load_state_dict(probe.state_dict(), strict=False)
    with torch.no_grad():
        assert torch.equal(model(video()), probe(video()))


def test_frame_order_blind():
    assert not make_method_config("lora").frames_interact
    torch.manual_seed(0)
    model = tiny_model("lora", preset="qkvo_r16", targets="q,k,v,o,fc1,fc2", num_frames=5).double().eval()
    randomise_trainable(model, torch.Generator().manual_seed(1))
    clip = video(frames=5, dtype=torch.float64)
    with torch.no_grad():
        logits = model(clip)
        torch.testing.assert_close(model(clip.flip(2)), logits, rtol=0, atol=1e-10)
        torch.testing.assert_close(model(clip[:, :, torch.tensor([3, 0, 4, 1, 2])]), logits, rtol=0, atol=1e-10)


@pytest.mark.parametrize("targets", ["q,v", "q,k,v,o", "k,o,fc1,fc2"])
def test_merged_model_gives_the_same_logits_in_float64(targets):
    torch.manual_seed(0)
    model = tiny_model("lora", rank=4, alpha=8.0, targets=targets).double().eval()
    randomise_trainable(model, torch.Generator().manual_seed(1))
    clip = video(dtype=torch.float64)
    with torch.no_grad():
        before = model(clip)
    merged = merge(model)
    assert merged is model and not any(isinstance(m, WrappedLinear) for m in model.modules())
    assert set(model.state_dict()) == {f"encoder.{k}" for k in model.encoder.backbone_state_keys()} | HEAD
    assert {n for n, _ in model.trainable_named_parameters()} == HEAD
    with torch.no_grad():
        torch.testing.assert_close(model(clip), before, rtol=1e-12, atol=1e-12)


def test_merged_flops_are_the_image_models():
    """Counted by bench.counting (fvcore): after merging, the image model's cost exactly."""
    from bench.counting import count_model
    torch.manual_seed(0)
    plain = count_model(tiny_model("linear_probe"), 4, 32)
    model = tiny_model("lora", preset="qkvo_r16", targets="q,k,v,o,fc1,fc2")
    unmerged = count_model(model, 4, 32)
    merged = count_model(merge(model), 4, 32)
    assert merged.unsupported_ops == {} and unmerged.gflops_per_view > plain.gflops_per_view
    assert merged.gflops_per_view == pytest.approx(plain.gflops_per_view, rel=0.005)


def test_bench_eval_evaluates_a_merged_checkpoint(tmp_path, world_cache, monkeypatch):
    """A merged LoRA model is an image model plus the head: its backbone written as an image weights
    file and its head as the checkpoint, bench.eval's linear_probe reproduces the unmerged model."""
    monkeypatch.setenv("BENCH_CACHE", str(world_cache))
    torch.manual_seed(5)
    model = build_model("lora", TINY, 10, 4, random_init=True, method_options={"preset": "qkvo_r16"})
    randomise_trainable(model, torch.Generator().manual_seed(6))
    assert_bench_eval_reproduces_merged(model, merge, ["--methods", "linear_probe"], tmp_path)


@pytest.mark.parametrize("options,message", [
    ({"rank": 0}, r"lora: option rank=0 is invalid: expected an int >= 1"),
    ({"alpha": 0}, r"lora: option alpha=0 is invalid: expected a number > 0"),
    ({"targets": "q,x"}, r"lora: option targets='q,x' is invalid: expected a non-empty set of distinct "
                         r"targets from \('q', 'k', 'v', 'o', 'fc1', 'fc2'\)"),
    ({"targets": ()}, r"lora: option targets=\(\) is invalid"),
])
def test_invalid_options(options, message):
    with pytest.raises(MethodConfigError, match=message):
        make_method_config("lora", **options)


def test_targets_are_normalised():
    assert make_method_config("lora", targets=" v, q").targets == ("q", "v")
    assert make_method_config("lora", preset="qkvo_r16").targets == ("q", "k", "v", "o")
