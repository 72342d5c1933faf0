"""Small builders the method tests share: every method on the tiny CPU backbone with the options it
declares for the synthetic recipes (sized for a 64-wide, 4-block ViT), random clips, and exact
trainable counts on CLIP ViT-B/16 built on the meta device."""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from methods import build_model, get_method

TINY = "vit_tiny_test"  # CLIP-style: 32 px, patch 8, width 64, 4 blocks, 4 heads
TINY_FAMILY = "synth"  # the recipe family whose options fit the tiny backbone
HEAD = {"head.fc.weight", "head.fc.bias"}


def tiny_options(method: str, **overrides) -> dict:
    return {**get_method(method).options_for(TINY_FAMILY), **overrides}


def tiny_model(method: str, num_frames: int = 4, num_classes: int = 5, **overrides) -> nn.Module:
    return build_model(method, TINY, num_classes=num_classes, num_frames=num_frames, random_init=True,
                       method_options=tiny_options(method, **overrides))


def randomise_trainable(model: nn.Module, generator: torch.Generator) -> None:
    """Give the zero-initialised parts (adapter convs, up-projections, embeddings...) real values."""
    with torch.no_grad():
        for _, param in model.trainable_named_parameters():
            param.copy_(torch.randn(param.shape, generator=generator, dtype=param.dtype) * 0.2)


def video(batch: int = 2, frames: int = 4, seed: int = 0, dtype=torch.float32) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 3, frames, 32, 32, generator=g, dtype=dtype)


def clip_b16_trainable(method: str, options: dict, num_classes: int, num_frames: int = 8) -> int:
    """Trainable parameters of ``method`` on CLIP ViT-B/16 (meta device: no memory, no compute)."""
    with torch.device("meta"):
        model = build_model(method, "clip_vit_b16", num_classes, num_frames=num_frames,
                            random_init=True, method_options=options)
    trainable, _ = model.parameter_counts()
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == trainable
    return trainable


def saved_bytes(fn) -> int:
    """Bytes of the tensors autograd saves for the backward while ``fn()`` runs."""
    total = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal total
        total += t.numel() * t.element_size()
        return t
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return total


def assert_bench_eval_reproduces_merged(model: nn.Module, merge: Callable[[nn.Module], nn.Module],
                                        method_args: Sequence[str], folder: Path) -> None:
    """Merge a copy of ``model`` (the tiny backbone, 10 classes, 4 frames), write it as users would
    (the backbone as an image weights file in OpenAI layout, what stays trainable as a checkpoint),
    evaluate those files with ``bench.eval`` on synth_motion (``method_args`` name the method they
    are built as) and assert that the predictions are ``model``'s own. Needs $BENCH_CACHE set to the
    session's synthetic world."""
    from bench.config import SYNTH, SYNTH_WORLD
    from bench.data import build_dataset
    from bench.engine.distributed import DistContext
    from bench.engine.evaluate import evaluate
    from bench.eval import main
    from bench.store.predictions import load_predictions
    from bench.store.records import load_records
    from methods.weights import to_openai_visual_state_dict

    model.eval()
    merged = merge(copy.deepcopy(model))
    weights, init, results = folder / "merged_visual.pt", folder / "merged_trainable.pt", folder / "results"
    torch.save(to_openai_visual_state_dict(merged.encoder), weights)
    torch.save({"trainable": {n: p.detach().clone() for n, p in merged.trainable_named_parameters()}}, init)
    assert main([*method_args, "--datasets", "synth_motion", "--backbone", TINY, "--recipe", "synth",
                 "--weights", str(weights), "--init", str(init), "--results", str(results),
                 "--executor", "debug", "--no-summary"]) == 0
    [record] = load_records(results)
    assert record.extra["eval_only"]
    produced = load_predictions(results, record)
    val = build_dataset("synth_motion", "val", SYNTH.clip, train=False, synth=SYNTH_WORLD)
    expected = evaluate(model, val, SYNTH.clip.views, 32, None, DistContext(0, 1, 0, torch.device("cpu")), {})
    assert (produced.topk_index[:, 0] == expected.topk_index[:, 0]).all()
    np.testing.assert_allclose(produced.topk_prob, expected.topk_prob, rtol=0, atol=1e-5)


def perturb_trainable(model: nn.Module, generator: torch.Generator, scale: float = 0.02) -> None:
    """Move every trainable tensor a little off its initialisation (zero-initialised modules then act,
    and the network stays as well conditioned as a trained one)."""
    with torch.no_grad():
        for _, param in model.trainable_named_parameters():
            param.add_(scale * torch.randn(param.shape, generator=generator, dtype=param.dtype).to(param.device))


def assert_gpu_fast_paths_as_accurate_as_plain_bf16(model: nn.Module, expected_paths: list[str]) -> None:
    """The engine's fast paths (``methods.fast.apply_fast_paths``, frozen weights in bf16) under bf16
    autocast are as close to the float64 function as the plain modules under the same autocast:
    logits and every trainable gradient within 1.5x the plain path's error (or 2% / 5%)."""
    import copy

    from methods.fast import apply_fast_paths, hold_frozen_in
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0
    clip = torch.randn(2, 3, 8, 224, 224, device="cuda", generator=torch.Generator(device="cuda").manual_seed(2))

    def run(m: nn.Module, x: torch.Tensor, autocast: bool):
        m.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
            logits = m(x)
        logits.float().sum().backward()
        return logits.detach(), {n: p.grad.clone() for n, p in m.trainable_named_parameters()}

    def rel(a: torch.Tensor, b: torch.Tensor) -> float:
        return ((a.double() - b.double()).norm() / b.double().norm()).item()

    truth = run(copy.deepcopy(model).double(), clip.double(), autocast=False)
    plain_model, fast_model = copy.deepcopy(model).float(), copy.deepcopy(model).float()
    hold_frozen_in(plain_model, torch.bfloat16)
    assert apply_fast_paths(fast_model) == expected_paths
    hold_frozen_in(fast_model, torch.bfloat16)
    plain, fast = run(plain_model, clip, autocast=True), run(fast_model, clip, autocast=True)
    assert torch.isfinite(fast[0]).all()
    assert rel(fast[0], truth[0]) <= max(2e-2, 1.5 * rel(plain[0], truth[0])), (rel(fast[0], truth[0]), rel(plain[0], truth[0]))
    for name, grad in fast[1].items():
        if truth[1][name].norm() > 0:  # a gradient that is exactly zero in float64 has no relative error
            limit = max(5e-2, 1.5 * rel(plain[1][name], truth[1][name]))
            assert rel(grad, truth[1][name]) <= limit, (name, rel(grad, truth[1][name]), limit)
