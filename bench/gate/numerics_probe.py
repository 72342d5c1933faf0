"""``python -m bench.gate.numerics_probe``: a few training steps of every method, hashed to the bit.

Whether two machines compute the same floats is a question of bytes, and the default suite takes
minutes to answer it. This answers it in seconds with the suite's own code: each registered method
on the synthetic ViT (patch convolution, attention, LayerNorm, GELU, the methods' own modules) takes
a few AdamW steps on fixed random clips in float32, and the trained parameters are hashed. Run it on
two machines, or here under an emulated ISA (``MKL_ENABLE_INSTRUCTIONS=AVX2``, ...), and compare
the digests: under the portable numerics profile they must be equal (``tests/test_numerics.py``).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from typing import Sequence

import torch
import torch.nn.functional as F

from bench.engine.optim import make_optimizer
from bench.numerics import effective
from methods import build_model, list_methods

STEPS = 4
FRAMES, SIZE, CLASSES, BATCH = 4, 32, 10, 8


def train_digest(method: str, steps: int = STEPS) -> str:
    """sha256 (16 hex) of ``method``'s trainable parameters after ``steps`` AdamW steps."""
    torch.manual_seed(0)
    model = build_model(method, "synth_vit", CLASSES, FRAMES, random_init=True)
    trainable = model.trainable_named_parameters()
    with torch.no_grad():  # zero-initialised modules would hide their own arithmetic for a step
        for _, param in trainable:
            param.add_(0.02 * torch.randn_like(param))
    optimizer = make_optimizer(trainable, 1e-3, 0.01, (0.9, 0.999))
    generator = torch.Generator().manual_seed(1)
    model.train()
    for _ in range(steps):
        video = torch.randn((BATCH, 3, FRAMES, SIZE, SIZE), generator=generator)
        labels = torch.randint(0, CLASSES, (BATCH,), generator=generator)
        loss = F.cross_entropy(model(video), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    digest = hashlib.sha256()
    for name, param in trainable:
        digest.update(name.encode())
        digest.update(param.detach().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def probe(methods: Sequence[str] | None = None, threads: int = 1) -> dict:
    torch.set_num_threads(threads)
    started = time.perf_counter()
    digests = {m: train_digest(m) for m in (methods or list_methods())}
    return {"numerics": effective(), "threads": threads, "digests": digests,
            "seconds": round(time.perf_counter() - started, 2)}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gate.numerics_probe", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", default=None, help="comma-separated methods (default: every registered one)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default: %(default)s)")
    args = parser.parse_args(argv)
    print(json.dumps(probe(args.methods.split(",") if args.methods else None, args.threads), indent=1, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
