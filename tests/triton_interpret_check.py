"""Runs the Triton kernels of methods.kernels through Triton's CPU interpreter against the PyTorch
formulations; started in a subprocess by tests/test_perf.py (TRITON_INTERPRET must be set before
Triton compiles anything). Prints one line per check; exits non-zero on the first mismatch."""
import os
import sys

os.environ["TRITON_INTERPRET"] = "1"

import torch  # noqa: E402

from methods.kernels.quick_gelu import quick_gelu_backward, quick_gelu_forward  # noqa: E402
from methods.kernels.temporal_conv import conv_backward, conv_forward  # noqa: E402
from methods.temporal_conv import temporal_depthwise_conv  # noqa: E402


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


def check(name: str, got: torch.Tensor, want: torch.Tensor, tol: float = 1e-5) -> None:
    err = rel(got, want)
    print(f"{name}: relative error {err:.2e}")
    if not err < tol:
        sys.exit(f"{name}: relative error {err} >= {tol}")


def main() -> None:
    g = torch.Generator().manual_seed(0)
    for clips, frames, rows, channels, kernel in ((2, 5, 7, 70, 3), (1, 3, 33, 64, 5), (3, 1, 4, 5, 3)):
        x = torch.randn(clips, frames, rows, channels, generator=g, dtype=torch.float64, requires_grad=True)
        weight = torch.randn(channels, 1, kernel, 1, 1, generator=g, dtype=torch.float64, requires_grad=True)
        bias = torch.randn(channels, generator=g, dtype=torch.float64, requires_grad=True)
        grad = torch.randn(x.shape, generator=g, dtype=torch.float64)
        ref = temporal_depthwise_conv(x, weight, bias)
        ref.backward(grad)
        taps = weight.detach().reshape(channels, kernel).t().contiguous().float()
        xf = x.detach().float()
        out = conv_forward(xf, taps, bias.detach().float())
        gx, gw, gb = conv_backward(grad.float(), xf, taps)
        shape = f"[{clips},{frames},{rows},{channels}] k={kernel}"
        check(f"conv forward {shape}", out, ref.detach())
        check(f"conv input grad {shape}", gx, x.grad)
        check(f"conv weight grad {shape}", gw.t(), weight.grad.reshape(channels, kernel))
        check(f"conv bias grad {shape}", gb, bias.grad)
    x = torch.randn(3, 1000, generator=g, dtype=torch.float64) * 3
    grad = torch.randn(x.shape, generator=g, dtype=torch.float64)
    xr = x.clone().requires_grad_(True)
    ref = xr * torch.sigmoid(1.702 * xr)
    ref.backward(grad)
    check("quick_gelu forward", quick_gelu_forward(x.float()), ref.detach())
    check("quick_gelu backward", quick_gelu_backward(x.float(), grad.float()), xr.grad)


if __name__ == "__main__":
    main()
