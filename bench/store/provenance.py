"""Provenance for run records: which code, which packages, which machine produced a number.

A result that cannot be traced back to a commit and an environment cannot be reproduced, so every
record carries these facts. Gathering them never fails a run: an unknown value is written as
"unknown" rather than raising.
"""
from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parents[2]

# Distributions whose versions can change a result (numerics, decoding, counting) or its launching.
TRACKED_PACKAGES = (
    "torch", "torchvision", "timm", "open_clip_torch", "decord", "av", "numpy", "fvcore",
    "submitit", "petl-video-bench",
)


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def git_state() -> tuple[str, bool]:
    """(commit hash, dirty flag). Untracked files count as dirty only inside the code folders."""
    commit = _git("rev-parse", "HEAD") or "unknown"
    status = _git("status", "--porcelain", "--", "bench", "methods", "pyproject.toml")
    return commit, bool(status) if status is not None else True


def package_versions() -> dict[str, str]:
    versions = {}
    for name in TRACKED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    versions["python"] = platform.python_version()
    return versions


def hardware(device: torch.device | None = None, world_size: int = 1) -> dict:
    """The machine a run used: CPU model and cores, and the GPU model when it ran on one."""
    info = {
        "hostname": platform.node(),
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count() or 0,
        "torch_threads": torch.get_num_threads(),
        "world_size": world_size,
        "device": "cpu" if device is None else device.type,
    }
    if device is not None and device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(gpu=props.name, gpu_memory_bytes=props.total_memory,
                    cuda=torch.version.cuda or "unknown")
    return info


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"
