"""Provenance for run records: which code, which packages, which machine produced a number.

A result that cannot be traced back to a commit and an environment cannot be reproduced, so every
record carries these facts. Gathering them never fails a run: an unknown value is written as
"unknown" rather than raising.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

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


# -- The environment fingerprint --------------------------------------------------------------------
# Two runs of one config give bit-identical numbers exactly when these facts agree (checked: a fresh
# venv from the lock on the same machine reproduces every record), so the gate compares records
# exactly under an equal fingerprint and statistically otherwise (bench/gate).

LOCK_FILE = REPO_ROOT / "lock" / "requirements.txt"
# The distributions whose code computes the numbers: kernels (torch), decoding (decord, av), image
# ops (numpy, pillow, torchvision), the model code (timm).
NUMERIC_PACKAGES = ("torch", "torchvision", "numpy", "decord", "av", "timm", "pillow")


def lock_digest() -> str:
    """sha256 (16 hex) of lock/requirements.txt, or "no lock" outside a checkout."""
    try:
        return hashlib.sha256(LOCK_FILE.read_bytes()).hexdigest()[:16]
    except OSError:
        return "no lock"


def locked_versions() -> dict[str, str]:
    """name -> version pinned in the lock (lower-case names, as pip writes them)."""
    try:
        text = LOCK_FILE.read_text()
    except OSError:
        return {}
    return dict(m.groups() for m in re.finditer(r"^([A-Za-z0-9_.-]+)==([^\s;\\]+)", text, re.M))


def installed_off_lock() -> list[str]:
    """``name installed X, lock Y`` for every numeric package whose installed version is not the
    locked one: a record made off the lock must say so, whatever its lock hash."""
    locked = {k.lower().replace("_", "-"): v for k, v in locked_versions().items()}
    off = []
    for name in NUMERIC_PACKAGES:
        installed = _version(name)
        pinned = locked.get(name)
        if pinned is not None and not installed.startswith(pinned):  # torch reports 2.14.1+cu130
            off.append(f"{name} installed {installed}, lock {pinned}")
    return off


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def _cpu_facts() -> dict[str, str]:
    facts = {"vendor": platform.processor() or "unknown", "model": _cpu_model()}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("vendor_id"):
                facts["vendor"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    # The widest vector ISA torch's CPU kernels could dispatch to here, and the one they do.
    facts["isa"] = torch.backends.cpu.get_cpu_capability()
    return facts


def _backend_settings() -> dict[str, Any]:
    """The torch switches that change float results."""
    settings: dict[str, Any] = {
        "threads": torch.get_num_threads(),
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
    }
    if torch.cuda.is_available():
        settings.update(cudnn_benchmark=torch.backends.cudnn.benchmark,
                        cudnn_deterministic=torch.backends.cudnn.deterministic,
                        cudnn_allow_tf32=torch.backends.cudnn.allow_tf32,
                        matmul_allow_tf32=torch.backends.cuda.matmul.allow_tf32)
    return settings


def fingerprint(device: torch.device | None = None) -> dict[str, Any]:
    """The facts that decide a run's float results, with their digest under "digest".

    Under the portable numerics profile (bench.numerics) every CPU of this kind runs the same kernels,
    so the digest covers the profile's effective settings and not the CPU: an Intel and an AMD machine
    with the same lock are one environment. Where the profile does not hold (``BENCH_NUMERICS=native``,
    or torch loaded before it), the CPU's vendor, model and ISA are part of the digest. The CPU is
    recorded under "machine" either way."""
    from bench.numerics import effective
    machine = _cpu_facts()
    numerics = effective()
    facts: dict[str, Any] = {
        "lock": lock_digest(), "off_lock": installed_off_lock(), "python": platform.python_version(),
        "packages": {name: _version(name) for name in NUMERIC_PACKAGES},
        "torch_cuda": torch.version.cuda or "cpu build", "numerics": numerics, "backends": _backend_settings(),
        "device": "cpu" if device is None else device.type,
    }
    if not numerics["holds"] or numerics["profile"].startswith("native"):
        facts["cpu"] = machine
    if device is not None and device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        facts.update(gpu=props.name, gpu_capability=f"{props.major}.{props.minor}",
                     cudnn=torch.backends.cudnn.version())
    blob = json.dumps(facts, sort_keys=True, separators=(",", ":"))
    return {**facts, "machine": machine, "digest": hashlib.sha256(blob.encode()).hexdigest()[:16]}
