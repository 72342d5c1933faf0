"""Print lock/requirements.txt without torch, torchvision and the CUDA 13 wheels they bring.

For clusters whose NVIDIA driver is older than the CUDA 13 build of the locked torch needs (below
580): install torch and torchvision from the site (its wheel, module or a CUDA 12 build), then the
rest of the lock from this output, hashes checked as usual (README, "Clusters with an older NVIDIA
driver"). Usage: ``python lock/without_torch.py > lock-site-torch.txt``.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

LOCK = Path(__file__).with_name("requirements.txt")
# torch's own build, and what only that build needs: its Triton and the CUDA runtime wheels.
SITE_PROVIDED = re.compile(r"(torch|torchvision|triton|nvidia-[\w-]+|cuda-[\w-]+)==")


def without_torch(lock: str) -> str:
    """The lock with every entry (a ``name==version`` line, its hash lines and ``# via`` comments)
    of a site-provided package left out."""
    entries, current = [], []
    for line in lock.splitlines(keepends=True):
        if line[:1] not in (" ", "#", "\n", "") and current:  # a new entry starts at column 0
            entries.append(current)
            current = []
        current.append(line)
    entries.append(current)
    return "".join(line for entry in entries if not SITE_PROVIDED.match(entry[0]) for line in entry)


if __name__ == "__main__":
    sys.stdout.write(without_torch(LOCK.read_text()))
