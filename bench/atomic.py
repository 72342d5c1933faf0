"""Atomic writes: a reader (or a job that crashes mid-write) sees the old file or the new one, never
half of either.

Every file the suite leaves behind (records, baselines, tables, plots, checkpoints, caches, list
files) is written to a temporary name in the target's own folder and renamed over the target, which
POSIX makes atomic within one file system.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

READABLE = 0o644  # mkstemp creates 0600; what the suite writes is meant to be read by anyone


def atomic_write(path: Path | str, content: str | bytes | Callable[[Path], None], *,
                 durable: bool = False, mode: int = READABLE) -> Path:
    """Write ``content`` (text, bytes, or a function that writes the file at the path it is given)
    to ``path`` atomically. ``durable`` also flushes it to disk before the rename, for files that
    must survive a machine crash (run records)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".tmp-{path.name}-", suffix=path.suffix)
    tmp = Path(name)
    try:
        if callable(content):
            os.close(fd)
            content(tmp)
        else:
            binary = isinstance(content, bytes)
            with os.fdopen(fd, "wb" if binary else "w", **({} if binary else {"encoding": "utf-8", "newline": "\n"})) as f:
                f.write(content)
        if durable:
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


@contextmanager
def atomic_directory(path: Path | str) -> Iterator[Path]:
    """Fill a temporary folder beside ``path``; on success it becomes ``path`` in one rename, on
    failure it is removed. If another process created ``path`` meanwhile (two jobs generating the
    same cache), theirs is kept and ours discarded: both were made from the same config."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".tmp-{path.name}-"))
    try:
        yield tmp
        try:
            os.rename(tmp, path)
        except OSError:
            if not path.is_dir():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
