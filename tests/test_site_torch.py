"""The README's install for clusters with an older NVIDIA driver: the lock without torch, beside the site's torch.

``lock/without_torch.py`` leaves out torch, torchvision and the CUDA 13 wheels only they need; the
rest installs with its hashes checked, and the suite plans a grid there. The site's torch is played by
this environment's own torch and torchvision, put on the new environment's path by a ``.pth`` file:
the same layout a cluster's module or wheel gives, without unpacking another 2 GB on CI's two cores.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SITE_PROVIDED = ("torch", "torchvision", "triton", "nvidia-", "cuda-")


def lock_names(text: str) -> set[str]:
    return {line.split("==")[0] for line in text.splitlines() if "==" in line and line[:1].isalnum()}


def hashes(text: str) -> dict[str, list[str]]:
    """Each pinned package's hash lines."""
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "==" in line and line[:1].isalnum():
            name = line.split("==")[0]
            found[name] = []
        elif "--hash=" in line:
            found[name].append(line.strip())
    return found


def site_provided(name: str) -> bool:
    return name in SITE_PROVIDED[:3] or name.startswith(SITE_PROVIDED[3:])


def test_the_lock_without_torch_keeps_everything_else_with_its_hashes():
    from lock.without_torch import LOCK, without_torch
    full, stripped = LOCK.read_text(), without_torch(LOCK.read_text())
    assert lock_names(stripped) == {name for name in lock_names(full) if not site_provided(name)}
    assert {"torch", "torchvision", "triton", "nvidia-cudnn-cu13", "cuda-bindings"} <= lock_names(full)
    lines = iter(full.splitlines())
    assert all(line in lines for line in stripped.splitlines())  # lines left out, none added or reordered
    kept = hashes(stripped)
    assert kept == {name: pinned for name, pinned in hashes(full).items() if name in kept}  # every hash kept


def _link_site_torch(folder: Path) -> None:
    """Symlinks to this environment's torch, torchvision and their CUDA wheels (their files' top folders)."""
    folder.mkdir()
    for dist in metadata.distributions():
        if not site_provided(dist.metadata["Name"].lower()):
            continue
        base = Path(dist.locate_file(""))
        for top in {Path(str(f)).parts[0] for f in dist.files or ()} - {".."}:
            if not (folder / top).exists():
                (folder / top).symlink_to(base / top)


@pytest.mark.slow
def test_a_lock_without_torch_installs_beside_a_site_torch_and_plans_a_grid(tmp_path):
    lock = tmp_path / "lock-site-torch.txt"
    lock.write_text(subprocess.run([sys.executable, str(REPO / "lock" / "without_torch.py")], check=True,
                                   capture_output=True, text=True).stdout)
    venv, site_torch = tmp_path / "venv", tmp_path / "site-torch"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    purelib = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    _link_site_torch(site_torch)
    (Path(purelib) / "site-torch.pth").write_text(f"{site_torch}\n")
    pip = [python, "-m", "pip", "--disable-pip-version-check"]
    subprocess.run([*pip, "install", "-q", "--require-hashes", "--no-deps", "-r", str(lock)], check=True)
    check = subprocess.run([*pip, "check"], capture_output=True, text=True, cwd=tmp_path, check=False)
    assert check.returncode == 0, check.stdout  # timm's and open_clip's torch needs met by the site's

    env = {**os.environ, "PYTHONPATH": str(REPO), "BENCH_CACHE": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1"}
    run = subprocess.run([python, "-m", "bench.run", "--dry-run", "--datasets", "synth_motion", "--methods",
                          "st_adapter,linear_probe", "--backbone", "vit_tiny_test", "--seeds", "1",
                          "--results", str(tmp_path / "results")], capture_output=True, text=True, cwd=tmp_path,
                         env=env, check=False)
    assert run.returncode == 0, run.stderr
    assert "synth_motion" in run.stdout and "st_adapter" in run.stdout and "GFLOPs/view" in run.stdout
    facts = json.loads(subprocess.run(
        [python, "-c", "import json; from bench.store.provenance import fingerprint; print(json.dumps(fingerprint()))"],
        check=True, capture_output=True, text=True, cwd=tmp_path, env=env).stdout)
    from bench.store.provenance import fingerprint
    here = fingerprint()
    assert facts["lock"] == here["lock"] and facts["off_lock"] == here["off_lock"]  # the same torch: on the lock
    assert facts["packages"] == here["packages"] and facts["torch_cuda"] == here["torch_cuda"]
