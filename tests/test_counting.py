"""fvcore counting: attention is counted (fused or not), frozen models count like trainable ones, and a
tiny ViT's total matches the multiply-adds written out by hand."""
import torch
import torch.nn.functional as F
from torch import nn

from bench.counting import cached_count, count_flops, count_model
from methods import build_model, get_backbone_config


class Sdpa(nn.Module):
    def forward(self, q, k, v):
        return F.scaled_dot_product_attention(q, k, v)


def test_scaled_dot_product_attention_is_counted():
    q, k, v = torch.zeros(2, 3, 5, 8), torch.zeros(2, 3, 7, 8), torch.zeros(2, 3, 7, 4)
    flops, unsupported = count_flops(Sdpa(), (q, k, v))
    assert flops == 2 * 3 * 5 * 7 * (8 + 4)  # QK^T + AV
    assert unsupported == {}


def test_frozen_multihead_attention_counts_the_unfused_path():
    """With frozen weights in eval mode nn.MultiheadAttention would take the fused kernel fvcore cannot see."""
    length, dim = 6, 16
    mha = nn.MultiheadAttention(dim, num_heads=2, batch_first=True).eval().requires_grad_(False)

    class SelfAttention(nn.Module):
        def __init__(self):
            super().__init__()
            self.mha = mha

        def forward(self, x):
            return self.mha(x, x, x, need_weights=False)[0]

    model = SelfAttention().eval()
    with torch.no_grad():
        flops, _ = count_flops(model, torch.zeros(1, length, dim))
    expected = length * dim * 3 * dim + 2 * length * length * dim + length * dim * dim
    assert flops == expected
    assert not any(p.requires_grad for p in model.parameters())  # state restored
    assert not model.training


def _vit_tiny_flops(frames: int, classes: int, adapter_width: int = 0, adapter_rows: int = 0) -> int:
    """Multiply-adds of vit_tiny_test by hand (fvcore convention: LayerNorm = 5 per element)."""
    cfg = get_backbone_config("vit_tiny_test")
    c, n, patches = cfg.width, cfg.num_patches + 1, cfg.num_patches
    per_frame = patches * c * 3 * cfg.patch_size**2 + 5 * n * c  # patch embedding, ln_pre
    block = 5 * n * c + n * c * 3 * c + 2 * n * n * c + n * c * c + 5 * n * c + 2 * n * c * 4 * c
    adapter = 2 * adapter_rows * c * adapter_width
    per_frame += cfg.depth * (block + adapter)
    return frames * per_frame + 5 * c + c * classes  # final LN and head on the time-pooled token


def test_tiny_vit_total_matches_hand_count():
    model = build_model("linear_probe", "vit_tiny_test", num_classes=5, num_frames=4, random_init=True)
    counts = count_model(model, num_frames=4, img_size=32)
    assert counts.gflops_per_view * 1e9 == _vit_tiny_flops(4, 5)
    assert counts.params_trainable == 64 * 5 + 5
    assert counts.params_total == sum(p.numel() for p in model.parameters())
    assert counts.unsupported_ops == {}


def test_adapters_add_their_projections():
    model = build_model("adapter", "vit_tiny_test", num_classes=5, num_frames=4, random_init=True,
                        method_options={"width": 16})
    flops = round(count_model(model, num_frames=4, img_size=32).gflops_per_view * 1e9)
    # fc1/fc2 act on the 16 patch tokens; an implementation may also run them on the CLS row
    assert _vit_tiny_flops(4, 5, 16, adapter_rows=16) <= flops <= _vit_tiny_flops(4, 5, 16, adapter_rows=17)


def test_st_adapter_temporal_conv_is_counted():
    """The shifted multiply-add form of the depthwise conv must not vanish from the count."""
    options = {"width": 16}
    plain = build_model("adapter", "vit_tiny_test", 5, 4, random_init=True, method_options=options)
    st = build_model("st_adapter", "vit_tiny_test", 5, 4, random_init=True, method_options=options)
    extra = count_model(st, 4, 32).gflops_per_view * 1e9 - count_model(plain, 4, 32).gflops_per_view * 1e9
    conv_form = 4 * 16 * 16 * 3 * 4  # depth x patches x width x taps x frames
    assert 0.8 * conv_form <= extra <= conv_form  # boundary taps of the zero-padded conv are skipped
    assert count_model(st, 4, 32).unsupported_ops == {}


def test_cached_count_builds_once(tmp_path):
    built = []

    def build():
        built.append(1)
        return build_model("linear_probe", "vit_tiny_test", 3, 2, random_init=True)

    first = cached_count({"method": "linear_probe", "classes": 3}, build, 2, 32, tmp_path)
    second = cached_count({"method": "linear_probe", "classes": 3}, build, 2, 32, tmp_path)
    assert first == second and len(built) == 1
    cached_count({"method": "linear_probe", "classes": 4}, build, 2, 32, tmp_path)
    assert len(built) == 2
