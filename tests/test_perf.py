"""The fast paths compute what their references compute; the benchmark measures and records.

CPU: the PyTorch side of every fast path in float64 (exact up to summation order), the Triton
kernels through Triton's interpreter, the model transforms of ``methods.fast``, and a smoke run of
``bench.perf``. GPU (skipped without CUDA): the compiled kernels and the whole fast model against the
reference path at bf16 tolerance, relative error ||a - b|| / ||b||.
"""
from __future__ import annotations

import copy
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from timm.layers import QuickGELU
from torch import nn

from bench import perf
from bench.counting import count_model
from bench.timing.cases import SETTINGS, BenchSpec, Case, cases
from bench.timing.profiling import kernel_category
from bench.timing.step import measure, randomise_zero_parameters
from methods import build_model, list_methods
from methods.fast import (
    AddToPatchRows,
    FastBottleneckAdapter,
    MatmulPatchEmbed,
    NativeLayerNorm,
    PackedGradAttention,
    RecomputedMLP,
    apply_fast_paths,
    fuse_activations,
    hold_frozen_in,
    pack_attention_grads,
    patch_embed_as_matmul,
    recompute_frozen_mlps,
    use_fast_adapters,
)
from methods.kernels.quick_gelu import FusedQuickGELU, QuickGELUFunction
from methods.kernels.temporal_conv import temporal_conv
from methods.temporal_conv import temporal_depthwise_conv
from tests.method_helpers import saved_bytes, tiny_options

ROOT = Path(__file__).resolve().parent.parent
TINY = "vit_tiny_test"


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    """||a - b|| / ||b||; 0 when both are zero (the last pre-MLP adapter's grads: nothing reads it)."""
    diff, norm = (a.double() - b.double()).norm().item(), b.double().norm().item()
    return diff / norm if norm > 0 else (0.0 if diff == 0 else float("inf"))


def tiny(method: str = "st_adapter", num_frames: int = 4, **options) -> nn.Module:
    """``method`` on the tiny backbone with its synthetic-recipe options (st_adapter: both positions)."""
    model = build_model(method, TINY, num_classes=5, num_frames=num_frames, random_init=True,
                        method_options=tiny_options(method, **options))
    randomise_zero_parameters(model, torch.Generator().manual_seed(0), std=0.2)
    for module in model.modules():  # deterministic outputs to compare (the head's, a method's own)
        if isinstance(module, nn.Dropout):
            module.p = 0.0
    return model


def clip(batch: int = 2, frames: int = 4, dtype=torch.float64, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, 3, frames, 32, 32, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def outputs_and_grads(model: nn.Module, video: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    model.zero_grad(set_to_none=True)
    logits = model(video)
    weights = torch.arange(1, logits.shape[1] + 1, dtype=logits.dtype, device=logits.device)
    (logits * weights).sum().backward()
    return logits.detach(), {n: p.grad.clone() for n, p in model.trainable_named_parameters()
                             if p.grad is not None}


# -- CPU: the PyTorch side ------------------------------------------------------------------------

def test_quick_gelu_function_is_timms_quick_gelu_and_saves_only_its_input():
    x = torch.randn(4, 7, 9, dtype=torch.float64, requires_grad=True)
    torch.testing.assert_close(QuickGELUFunction.apply(x), QuickGELU()(x), rtol=0, atol=1e-12)
    assert torch.autograd.gradcheck(QuickGELUFunction.apply, (x,))
    assert saved_bytes(lambda: QuickGELUFunction.apply(x)) == x.numel() * 8
    assert saved_bytes(lambda: QuickGELU()(x)) >= 2 * x.numel() * 8  # eager keeps x and the sigmoid
    assert saved_bytes(lambda: FusedQuickGELU()(x)) == x.numel() * 8


@pytest.mark.parametrize("dtypes", [(torch.float64, torch.float64), (torch.float64, torch.float32)])
def test_add_to_patch_rows_equals_slice_and_cat(dtypes):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, 6, 5, generator=g, dtype=dtypes[0], requires_grad=True)
    delta = torch.randn(3, 6, 5, generator=g, dtype=dtypes[1], requires_grad=True)
    grad = torch.randn(3, 6, 5, generator=g, dtype=torch.float64)
    out = AddToPatchRows.apply(x, delta, 1)
    out.backward(grad)
    got = (out.detach(), x.grad.clone(), delta.grad.clone())
    x.grad = delta.grad = None
    ref = torch.cat((x[:, :1], x[:, 1:] + delta[:, 1:]), dim=1)
    ref.backward(grad)
    assert out.dtype == ref.dtype and got[2].dtype == delta.dtype
    for a, b in zip(got, (ref.detach(), x.grad, delta.grad)):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
    assert not got[2][:, 0].any()


def assert_same_outputs_and_grads(got, expected) -> None:
    """Equal logits and equal gradients of the same parameters, in float64 (function unchanged)."""
    torch.testing.assert_close(got[0], expected[0], rtol=0, atol=1e-10)
    assert got[1].keys() == expected[1].keys() and got[1]
    for name in got[1]:
        torch.testing.assert_close(got[1][name], expected[1][name], rtol=0, atol=1e-10, msg=name)


@pytest.mark.parametrize("method,options", [
    ("st_adapter", {}), ("st_adapter", {"preset": "12x384", "width": 16}),
    ("adapter", {"width": 16}), ("adapter", {"width": 16, "kernel_size": 1}),
])
def test_adapter_fast_path_equals_reference_path(method, options):
    model = tiny(method, **options).double()
    video = clip()
    reference = outputs_and_grads(model, video)
    fast = copy.deepcopy(model)
    assert use_fast_adapters(fast) > 0 and sum(isinstance(m, FastBottleneckAdapter) for m in fast.modules())
    assert_same_outputs_and_grads(outputs_and_grads(fast, video), reference)


@pytest.mark.parametrize("method", list_methods())
def test_fused_activations_and_recomputed_mlps_keep_outputs_gradients_and_keys(method):
    model = tiny(method).double()
    keys = list(model.state_dict())
    trainable = {n for n, _ in model.trainable_named_parameters()}
    frozen_blocks = sum(not any(n.startswith(f"encoder.blocks.{i}.mlp.") for n in trainable)
                        for i in range(model.encoder.depth))
    video = clip()
    before = outputs_and_grads(model, video)
    activations = sum(type(m) is QuickGELU for m in model.modules())  # the encoder's, a method's own
    assert fuse_activations(model) == activations >= model.encoder.depth
    recomputed = recompute_frozen_mlps(model)
    assert recomputed == frozen_blocks
    assert sum(isinstance(m, RecomputedMLP) for m in model.modules()) == frozen_blocks
    assert not any(type(m) is QuickGELU for m in model.modules()) and list(model.state_dict()) == keys
    after = outputs_and_grads(model, video)
    assert_same_outputs_and_grads(after, before)


@pytest.mark.parametrize("method", list_methods())
def test_packed_attention_and_matmul_patch_embed_keep_outputs_gradients_and_keys(method):
    model = tiny(method).double()
    keys = list(model.state_dict())
    video = clip()
    before = outputs_and_grads(model, video)
    attention = sum(1 for m in model.modules() if type(m).__name__ == "Attention")
    assert pack_attention_grads(model) == attention > 0 and patch_embed_as_matmul(model) == 1
    assert isinstance(model.encoder.blocks[0].attn, PackedGradAttention)
    assert isinstance(model.encoder.patch_embed, MatmulPatchEmbed) and list(model.state_dict()) == keys
    after = outputs_and_grads(model, video)
    assert_same_outputs_and_grads(after, before)


def test_packed_attention_backward_has_no_concatenation():
    model = tiny("full_ft")
    video = clip(dtype=torch.float32)

    def backward_ops() -> set[str]:
        seen, stack = {}, [model(video).sum().grad_fn]
        while stack:
            fn = stack.pop()
            if fn is not None and id(fn) not in seen:
                seen[id(fn)] = fn  # kept alive, so its id is not reused by a later wrapper
                stack.extend(child for child, _ in fn.next_functions)
        return {fn.name() for fn in seen.values()}
    assert any(n.startswith("UnbindBackward") for n in backward_ops())
    assert any(n.startswith("PermuteBackward") for n in backward_ops())
    pack_attention_grads(model)
    assert not any(n.startswith("PermuteBackward") for n in backward_ops())


def test_recomputed_mlp_saves_less_for_the_backward():
    video = clip(dtype=torch.float32)
    model = tiny("st_adapter")
    plain = saved_bytes(lambda: model(video))
    recompute_frozen_mlps(model)
    fuse_activations(model)
    assert saved_bytes(lambda: model(video)) < plain


def test_frozen_weights_in_bf16_keep_trainable_fp32_and_the_function_to_bf16_tolerance():
    model = tiny("st_adapter")
    video = clip(dtype=torch.float32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        before = outputs_and_grads(model, video)
    trainable = {n for n, _ in model.trainable_named_parameters()}
    cast = hold_frozen_in(model, torch.bfloat16)
    assert cast == sum(1 for _, p in model.named_parameters() if not p.requires_grad)
    assert all((p.dtype == torch.float32) == (n in trainable) for n, p in model.named_parameters())
    norms = [m for m in model.modules() if isinstance(m, nn.LayerNorm)]
    assert norms and all(isinstance(m, NativeLayerNorm) for m in norms)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        after = outputs_and_grads(model, video)
    assert rel(after[0], before[0]) < 3e-2
    for name in before[1]:
        assert after[1][name].dtype == torch.float32
        assert rel(after[1][name], before[1][name]) < 1e-1, name


def test_native_layer_norm_matches_autocast_layer_norm_rounded_to_bf16():
    norm = nn.LayerNorm(32)
    with torch.no_grad():
        norm.weight.normal_()
        norm.bias.normal_()
    x = torch.randn(5, 32).bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        expected = norm(x).bfloat16()  # autocast: fp32 LayerNorm, the next linear rounds to bf16
        norm.weight.data, norm.bias.data = norm.weight.data.bfloat16(), norm.bias.data.bfloat16()
        norm.__class__ = NativeLayerNorm
        got = norm(x)
    assert got.dtype == torch.bfloat16
    assert rel(got, expected) < 1e-2


def test_the_engine_counts_the_plain_model_and_applies_only_the_patch_gemm_on_cpu(tmp_path):
    """Counts never depend on which paths run: the engine counts before any swap (CPU: the patch
    embedding as one GEMM, which the plain convolution's FLOPs equal)."""
    from bench.engine.build import prepare_model
    from bench.engine.distributed import DistContext
    from tests.engine_helpers import tiny_run
    cfg = tiny_run(tmp_path)
    model, counts, applied = prepare_model(cfg, 10, DistContext(0, 1, 0, torch.device("cpu")), None)
    assert applied == ["matmul_patch_embed"] and isinstance(model.encoder.patch_embed, MatmulPatchEmbed)
    torch.manual_seed(0)
    plain = build_model(cfg.method, cfg.backbone, 10, cfg.recipe.clip.num_frames, random_init=True,
                        method_options=dict(cfg.method_options))
    assert counts == count_model(plain, cfg.recipe.clip.num_frames, cfg.recipe.clip.input_size)
    assert apply_fast_paths(plain) == ["fused_quick_gelu", "packed_attention_grads", "matmul_patch_embed",
                                       "fast_adapters"]


@pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="Triton is not installed")
def test_triton_kernels_in_the_interpreter_match_pytorch():
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, str(ROOT / "tests" / "triton_interpret_check.py")], env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.count("relative error") == 14


# -- CPU: the benchmark ---------------------------------------------------------------------------

def test_perf_smoke_run_writes_one_record_per_setting_and_method(tmp_path, capsys):
    code = perf.main(["--device", "cpu", "--backbone", TINY, "--input-size", "32", "--batch-size", "2",
                      "--steps", "2", "--warmup", "1", "--settings", "plain,fast",
                      "--methods", "full_ft,st_adapter_12x384", "--out", str(tmp_path)])
    assert code == 0
    files = sorted(p.name for p in tmp_path.glob("*.json"))
    assert files == [f"{TINY}__{s}__{m}.json" for s in ("fast", "plain") for m in ("full_ft", "st_adapter_12x384")]
    data = json.loads((tmp_path / f"{TINY}__fast__st_adapter_12x384.json").read_text())
    assert data["setting"] == "fast" and data["setting_detail"]["frozen_dtype"] == "bf16"
    assert data["step_ms"] > 0 and data["clips_per_s"] > 0 and data["eval_clips_per_s"] > 0
    assert data["params_trainable"] > 0 and data["step_ratio_to_full_ft"] > 0
    assert data["spec"]["batch_size"] == 2 and data["environment"]["torch"] == torch.__version__
    assert "| fast | st_adapter_12x384 |" in capsys.readouterr().out
    assert perf.main(["--from-records", str(tmp_path)]) == 0  # the table again, from the records alone
    table = capsys.readouterr().out
    rows = [line for line in table.splitlines() if line.startswith("| plain") or line.startswith("| fast")]
    assert len(rows) == 4 and rows[0].startswith("| plain | full_ft |")
    assert perf.main(["--from-records", str(tmp_path / "empty")]) == 2


def test_perf_rejects_unknown_method_and_setting(capsys):
    assert perf.main(["--device", "cpu", "--methods", "st_adapter_99"]) == 2
    assert perf.main(["--device", "cpu", "--settings", "turbo"]) == 2
    err = capsys.readouterr().err
    assert "st_adapter_99" in err and "turbo" in err


def test_every_registered_method_is_a_perf_case_with_its_parameter_count():
    """Cases come from the registry (the options each method declares for K400 and SSv2); the
    methods of DESIGN.md section 3 keep their labels and counts."""
    design = {"linear_probe": 307_600, "full_ft": 86_107_024, "partial_ft": 7_397_008,
              "st_adapter_12x384": 7_417_744, "st_adapter_24x384": 14_527_888,
              "adapter_12x384": 7_399_312, "prompt_tuning_deep50": 768_400,
              "temporal_attention": 35_767_696}
    found = cases()
    assert found[0].label == "full_ft" and len({c.label for c in found}) == len(found)
    assert set(design) <= {c.label for c in found} and {c.method for c in found} == set(list_methods())
    for case in found:
        with torch.device("meta"):
            model = build_model(case.method, "clip_vit_b16", 400, 8, random_init=True,
                                method_options=dict(case.options))
        assert model.parameter_counts()[0] == design.get(case.label, model.parameter_counts()[0]) > 0, case.label


def test_kernel_categories():
    assert kernel_category("void pytorch_flash::flash_fwd_kernel<...>") == "attention (flash/SDPA)"
    assert kernel_category("sm90_xmma_gemm_bf16bf16_bf16f32_f32_tn_n") == "matmul (cuBLAS/CUTLASS)"
    assert kernel_category("_conv_bwd_kernel") == "triton: temporal conv"
    assert kernel_category("void at::native::vectorized_elementwise_kernel<4, ...>") == "elementwise"


# -- GPU --------------------------------------------------------------------------------------------

def _poison_allocator(numel: int) -> None:
    """Leave NaNs in the caching allocator's free blocks, so an unwritten output shows up."""
    torch.full((numel,), float("nan"), device="cuda")
    torch.cuda.synchronize()


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("frames,kernel", [(8, 3), (5, 5), (1, 3)])
def test_gpu_temporal_conv_kernel_matches_reference(dtype, frames, kernel):
    g = torch.Generator(device="cuda").manual_seed(frames * 10 + kernel)
    x64 = torch.randn(3, frames, 197, 384, generator=g, device="cuda", dtype=torch.float64)
    weight = torch.randn(384, 1, kernel, 1, 1, generator=g, device="cuda", dtype=torch.float64) * 0.3
    bias = torch.randn(384, generator=g, device="cuda", dtype=torch.float64)
    grad = torch.randn(x64.shape, generator=g, device="cuda", dtype=torch.float64)
    truth = [t.requires_grad_(True) for t in (x64.clone(), weight.clone(), bias.clone())]
    expected = temporal_depthwise_conv(*truth)
    expected.backward(grad)
    inputs = [x64.to(dtype).requires_grad_(True), weight.float().requires_grad_(True),
              bias.float().requires_grad_(True)]
    _poison_allocator(x64.numel() * 2)
    out = temporal_conv(*inputs)
    out.backward(grad.to(dtype))
    tol = 1e-5 if dtype == torch.float32 else 1e-2
    assert out.dtype == dtype and torch.isfinite(out).all()
    assert rel(out, expected) < tol
    for got, want in zip(inputs, truth):
        assert torch.isfinite(got.grad).all() and rel(got.grad, want.grad) < tol


@pytest.mark.gpu
def test_gpu_quick_gelu_kernel_is_at_least_as_accurate_as_eager_bf16():
    g = torch.Generator(device="cuda").manual_seed(0)
    x64 = torch.randn(256, 197, 3072, generator=g, device="cuda", dtype=torch.float64) * 2
    grad = torch.randn(x64.shape, generator=g, device="cuda", dtype=torch.float64)
    truth = x64.clone().requires_grad_(True)
    QuickGELU()(truth).backward(grad)
    errors = {}
    for name, fn in (("fused", QuickGELUFunction.apply), ("eager", QuickGELU())):
        x = x64.bfloat16().requires_grad_(True)
        _poison_allocator(x.numel())
        out = fn(x)
        out.backward(grad.bfloat16())
        assert torch.isfinite(out).all() and torch.isfinite(x.grad).all()
        errors[name] = (rel(out, QuickGELU()(x64)), rel(x.grad, truth.grad))
    assert errors["fused"][0] < 1e-2 and errors["fused"][1] < 1e-2
    assert errors["fused"][0] <= errors["eager"][0] * 1.05 and errors["fused"][1] <= errors["eager"][1] * 1.05


@pytest.mark.gpu
@pytest.mark.parametrize("preset", ["12x384", "24x384"])
def test_gpu_fast_st_adapter_model_matches_reference_path(preset):
    """The whole model at the paper's architecture: fast path (kernels, row handling, fused GELU)
    against the plain formulation, same weights, bf16 autocast; outputs and every trainable grad."""
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = build_model("st_adapter", "clip_vit_b16", 400, 8, random_init=True,
                            method_options={"preset": preset})
    randomise_zero_parameters(model, torch.Generator().manual_seed(1))
    model.head.dropout.p = 0.0
    video = torch.randn(2, 3, 8, 224, 224, device="cuda", generator=torch.Generator(device="cuda").manual_seed(2))
    with torch.no_grad():
        video64 = video.double()
    results = {}
    for name in ("fp64", "reference", "fast"):
        if name == "fast":
            apply_fast_paths(model)
        if name == "fp64":
            results[name] = outputs_and_grads(model.double(), video64)
            model.float()
        else:
            with torch.autocast("cuda", dtype=torch.bfloat16):
                results[name] = outputs_and_grads(model, video)
    truth = results["fp64"]
    for name in ("reference", "fast"):
        logits, grads = results[name]
        assert torch.isfinite(logits).all()
        assert rel(logits, truth[0]) < 2e-2, (name, rel(logits, truth[0]))
        for param, grad in grads.items():
            assert rel(grad, truth[1][param]) < 5e-2, (name, param, rel(grad, truth[1][param]))
    # the fast path is no further from float64 than the plain bf16 path, up to rounding noise
    assert rel(results["fast"][0], truth[0]) < 1.5 * rel(results["reference"][0], truth[0]) + 1e-3


@pytest.mark.gpu
def test_gpu_perf_measures_a_step():
    spec = BenchSpec(batch_size=2, warmup_steps=2, timed_steps=3, eval_steps=2)
    m = measure(Case("st_adapter_12x384", "st_adapter", {"preset": "12x384"}),
                     SETTINGS["fast"], spec)
    assert m.step_ms > 0 and m.peak_memory_bytes > m.static_memory_bytes > 0
