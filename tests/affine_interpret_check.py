"""Runs bench.data.affine_kernel through Triton's CPU interpreter against gpu_augment.affine (the
PyTorch formulation, itself equal to Pillow); started in a subprocess by tests/test_data_device.py."""
import os
import sys

os.environ["TRITON_INTERPRET"] = "1"

import numpy as np  # noqa: E402
import torch  # noqa: E402

from bench.data.affine_kernel import affine_triton  # noqa: E402
from bench.data.gpu_augment import affine, affine_matrix  # noqa: E402


def main() -> None:
    rng = np.random.default_rng(0)
    for trial in range(4):
        n, frames, height, width = 3, 2, 19 + trial, 30 - trial  # odd sizes: the block's tail is masked
        x = torch.from_numpy(rng.integers(0, 256, (n, frames, 3, height, width))).float()
        sizes = torch.tensor([[height, width], [height - 3, width - 5], [height, width - 2]])
        ops = [("Rotate", (float(rng.uniform(-30, 30)),)), ("ShearX", (float(rng.uniform(-.3, .3)),)),
               ("TranslateYRel", (float(rng.uniform(-.45, .45)),))]
        matrices = torch.tensor([affine_matrix(*op, *s) for op, s in zip(ops, sizes.tolist())], dtype=torch.float64)
        want, got = affine(x, sizes, matrices, (123, 117, 104)), affine_triton(x, sizes, matrices, (123, 117, 104), 64)
        if not torch.equal(want, got):
            sys.exit(f"trial {trial}: {(want - got).abs().max().item()} levels apart")
        print(f"trial {trial}: equal")


if __name__ == "__main__":
    main()
