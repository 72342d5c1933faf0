"""Parameter and FLOP counts per run, in fvcore's convention (one multiply-add = one flop).

Two traps make naive fvcore counts of ViTs wrong (DESIGN.md §3): fvcore has no handle for
``aten::scaled_dot_product_attention`` (it silently drops QK^T and AV), and under ``torch.no_grad()``
or with frozen weights ``nn.MultiheadAttention`` takes a fused kernel fvcore cannot see. So attention
gets a handle here, and the trace runs with grad enabled and every parameter requiring grad.
Elementwise ops cost nothing by the convention; any other op fvcore cannot count is reported, never
silently dropped.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

with warnings.catch_warnings():
    # fvcore.nn scripts its focal loss at import, which torch >= 2.10 reports as deprecated on every
    # command; nothing here uses it.
    warnings.filterwarnings("ignore", message="`torch.jit.script` is deprecated", category=FutureWarning)
    from fvcore.nn import FlopCountAnalysis, parameter_count
    from fvcore.nn.jit_handles import get_shape
from torch import nn

from bench.atomic import atomic_write

log = logging.getLogger(__name__)

# Elementwise and data-movement ops: free in fvcore's multiply-add convention.
FREE_OPS = (
    "aten::add", "aten::add_", "aten::sub", "aten::rsub", "aten::mul", "aten::mul_", "aten::div",
    "aten::neg", "aten::exp", "aten::sigmoid", "aten::gelu", "aten::silu", "aten::relu",
    "aten::softmax", "aten::log_softmax", "aten::dropout", "aten::dropout_", "aten::feature_dropout",
    "aten::mean", "aten::sum", "aten::pad", "aten::constant_pad_nd", "aten::repeat", "aten::roll",
    "aten::fill_", "aten::zeros_like", "aten::ones_like", "aten::masked_fill", "aten::where",
    "aten::clamp", "aten::pow", "aten::sqrt", "aten::rsqrt", "aten::tanh", "aten::cumsum", "aten::abs",
    "aten::clone",  # zeroi2v: the head shift writes into a copy of the qkv output
)
# Custom autograd functions (fvcore names them prim::PythonOp.<class>) known to be elementwise.
FREE_PYTHON_OPS = (
    "prim::PythonOp.AddToPatchRows",  # methods.bottleneck: the adapter's residual add as one op
)


def free_flop_jit(inputs: list[Any], outputs: list[Any]) -> int:
    """A handle, not ``None``: fvcore's ignore list cannot name a PythonOp by its class."""
    return 0


def sdpa_flop_jit(inputs: list[Any], outputs: list[Any]) -> int:
    """QK^T and AV multiply-adds of ``scaled_dot_product_attention(q, k, v, ...)``."""
    q, k, v = (get_shape(x) for x in inputs[:3])
    batch = math.prod(q[:-2])
    length, source, dim, value_dim = q[-2], k[-2], q[-1], v[-1]
    return batch * length * source * (dim + value_dim)


def baddbmm_flop_jit(inputs: list[Any], outputs: list[Any]) -> int:
    """``baddbmm(c, a, b)``: the batched product a @ b (the add is elementwise, hence free)."""
    a, b = get_shape(inputs[1]), get_shape(inputs[2])
    return a[0] * a[1] * a[2] * b[2]


def addcmul_flop_jit(inputs: list[Any], outputs: list[Any]) -> int:
    """``addcmul(c, a, b)`` = c + a * b: one multiply-add per output element (the shifted-tap form of
    ST-Adapter's depthwise temporal conv is written this way, and must cost what the conv costs)."""
    return math.prod(get_shape(outputs[0]))


@dataclass(frozen=True)
class Counts:
    params_trainable: int
    params_total: int
    gflops_per_view: float
    unsupported_ops: dict[str, int] = field(default_factory=dict)


@contextmanager
def _countable(model: nn.Module) -> Iterator[None]:
    """Eval mode, grad enabled, every parameter requiring grad: the unfused attention path."""
    was_training = model.training
    requires = {p: p.requires_grad for p in model.parameters()}
    try:
        model.eval()
        for p in requires:
            p.requires_grad_(True)
        with torch.enable_grad():
            yield
    finally:
        for p, flag in requires.items():
            p.requires_grad_(flag)
        model.train(was_training)


def count_flops(model: nn.Module, example: torch.Tensor) -> tuple[int, dict[str, int]]:
    """Flops of one forward pass on ``example`` and the ops fvcore could not count (name -> calls)."""
    analysis = FlopCountAnalysis(model, example)
    analysis.set_op_handle(**{op: None for op in FREE_OPS})
    analysis.set_op_handle(**{op: free_flop_jit for op in FREE_PYTHON_OPS})
    analysis.set_op_handle(**{"aten::scaled_dot_product_attention": sdpa_flop_jit,
                              "aten::baddbmm": baddbmm_flop_jit,
                              "aten::addcmul": addcmul_flop_jit, "aten::addcmul_": addcmul_flop_jit})
    analysis.unsupported_ops_warnings(False)
    analysis.uncalled_modules_warnings(False)
    with _countable(model):
        total = analysis.total()
    unsupported = dict(sorted(analysis.unsupported_ops().items()))
    if unsupported:
        log.warning("fvcore cannot count these ops; they are left out of the flops: %s", unsupported)
    return int(total), unsupported


def count_model(model: nn.Module, num_frames: int, img_size: int) -> Counts:
    """Trainable/total parameters and GFLOPs of one view (1 clip of ``num_frames`` frames).

    ``model`` follows the VideoClassifier interface: input (B, 3, T, H, W), a declared trainable set.
    """
    trainable = sum(p.numel() for _, p in model.trainable_named_parameters())
    total = parameter_count(model)[""]
    device = next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    example = torch.zeros(1, 3, num_frames, img_size, img_size, device=device, dtype=dtype)
    flops, unsupported = count_flops(model, example)
    return Counts(params_trainable=trainable, params_total=total, gflops_per_view=flops / 1e9,
                  unsupported_ops=unsupported)


def _code_digest() -> str:
    """Counts depend on the model code and the counting code: any edit there invalidates the cache."""
    root = Path(__file__).resolve().parent.parent
    digest = hashlib.sha256()
    for path in sorted([*root.glob("methods/*.py"), Path(__file__).resolve()]):
        digest.update(path.name.encode() + path.read_bytes())
    import fvcore
    import timm
    digest.update(f"{torch.__version__} {timm.__version__} {getattr(fvcore, '__version__', '')}".encode())
    return digest.hexdigest()


def cached_count(identity: dict[str, Any], build: Callable[[], nn.Module], num_frames: int, img_size: int,
                 cache_dir: Path) -> Counts:
    """``count_model(build(), ...)`` remembered on disk: tracing ViT-B/16 takes seconds on a CPU,
    and dry runs count the same models again and again."""
    blob = json.dumps({**identity, "frames": num_frames, "size": img_size, "code": _code_digest()},
                      sort_keys=True, default=str)
    path = Path(cache_dir) / f"{hashlib.sha256(blob.encode()).hexdigest()[:24]}.json"
    if path.is_file():
        return Counts(**json.loads(path.read_text()))
    counts = count_model(build(), num_frames, img_size)
    atomic_write(path, json.dumps(dataclasses.asdict(counts)))
    return counts
