"""Where the suite keeps what it can make again (synthetic worlds, pre-trained weights, counts, digests)."""
from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """``$BENCH_CACHE``, default ``~/.cache/petl-bench``."""
    return Path(os.environ.get("BENCH_CACHE", "~/.cache/petl-bench")).expanduser()
