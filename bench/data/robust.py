"""Broken videos never stop a run: a fixed replacement walk, and each failure logged once per process.

A video is broken only when no reader decodes it (missing, empty, truncated, garbage). One that the
loader's reader fails on but the other reader decodes is a reader defect: it is read by the other
reader and noted apart (``ReaderFallbacks``), never replaced.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterator

logger = logging.getLogger("bench.data")


class AllVideosBrokenError(RuntimeError):
    """Every video of a dataset failed to decode: the root or the list is wrong, not a few files."""


def replacement_walk(index: int, size: int) -> Iterator[int]:
    """``index`` itself, then the following indices, wrapping around.

    The walk depends on nothing but the index, so the replacement of a broken video is the same for
    every method, seed and worker count (a worker that has not yet met a broken neighbour only tries it
    and moves on to the same result). With class-sorted lists (K400) the neighbour is usually of the
    same class, which keeps the class balance.
    """
    for step in range(size):
        yield (index + step) % size


class BrokenVideos:
    """Indices known to be broken in this process, with the error each raised (logged the first time)."""

    message = "broken video %s (%s); its samples use the next readable video"

    def __init__(self) -> None:
        self.errors: dict[int, str] = {}
        self.quiet = False  # set while probing a dataset (bench.run's check): its error says it all

    def __contains__(self, index: int) -> bool:
        return index in self.errors

    def mark(self, index: int, path: Path, error: BaseException | str, log: bool = True) -> None:
        if index in self.errors:
            return
        self.errors[index] = str(error)
        if log and not self.quiet:
            logger.warning(self.message, path, error)


class ReaderFallbacks(BrokenVideos):
    """Indices whose video the loader's reader failed on and the other reader decoded, with the error."""

    message = ("reader fallback: %s is read by the other reader, the loader's failed on it (%s); a reader "
               "defect, not a broken video: please report it with the file")
