"""Content digests of large input files (weights, checkpoints), computed once per file version.

A run's identity must change when its weights do, and must not change when the same file is mounted
elsewhere: so weights are named by the sha256 of their bytes, not by their path or name (every timm
file in a hub cache is called ``model.safetensors``). Hashing a 1.4 GB checkpoint takes seconds, so
digests are remembered under the cache directory, keyed by the file's resolved path, size and
modification time: a file replaced in place is hashed again.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from bench.atomic import atomic_write
from bench.cache import cache_root

CHUNK = 1 << 22


def content_digest(path: Path | str) -> str:
    """``sha256:<64 hex>`` of the file's bytes."""
    path = Path(path).resolve()
    stat = path.stat()
    key = hashlib.sha256(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}".encode()).hexdigest()[:32]
    remembered = cache_root() / "digests" / f"{key}.json"
    try:
        return json.loads(remembered.read_text())["digest"]
    except (OSError, ValueError, KeyError):
        pass
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    value = f"sha256:{digest.hexdigest()}"
    atomic_write(remembered, json.dumps({"path": str(path), "size": stat.st_size,
                                         "mtime_ns": stat.st_mtime_ns, "digest": value}))
    return value
