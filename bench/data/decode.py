"""Decoding only the sampled frames with decord, plus an optional per-process cache of decoded videos."""
from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path
from typing import Callable

import decord
import numpy as np


class VideoDecodeError(RuntimeError):
    """A video that cannot be opened or lacks the requested frames (missing, empty, truncated, garbage)."""

    def __init__(self, path: Path | str, cause: BaseException):
        self.path, self.cause = Path(path), cause
        super().__init__(f"{path}: {type(cause).__name__}: {str(cause).strip().splitlines()[0] if str(cause) else ''}")


class FrameCache:
    """Decoded videos (uint8 T,H,W,3) kept in this process, least recently used evicted past a byte budget.

    Meant for small videos read many times (the synthetic suite's many short runs); a video larger
    than the whole budget is never kept. Keys include size and mtime so a rewritten file is re-read.
    """

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self.bytes = 0
        self._videos: OrderedDict[tuple, np.ndarray] = OrderedDict()

    @staticmethod
    def key(path: Path) -> tuple:
        stat = os.stat(path)
        return str(path), stat.st_size, stat.st_mtime_ns

    def get(self, key: tuple) -> np.ndarray | None:
        frames = self._videos.get(key)
        if frames is not None:
            self._videos.move_to_end(key)
        return frames

    def put(self, key: tuple, frames: np.ndarray) -> None:
        if frames.nbytes > self.max_bytes or key in self._videos:
            return
        self._videos[key] = frames
        self.bytes += frames.nbytes
        while self.bytes > self.max_bytes:
            _, evicted = self._videos.popitem(last=False)
            self.bytes -= evicted.nbytes


_process_cache: FrameCache | None = None


def process_frame_cache(max_bytes: int = 1 << 30) -> FrameCache:
    """The cache shared by every dataset in this process; forked DataLoader workers start with a
    copy-on-write view of what the parent had decoded and fill their own copies from there."""
    global _process_cache
    if _process_cache is None:
        _process_cache = FrameCache(max_bytes)
    return _process_cache


def read_frames(path: Path, choose: Callable[[int], np.ndarray],
                cache: FrameCache | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Frames at ``choose(frame_count)`` as uint8 (*indices.shape, H, W, 3), and the indices.

    Without a cache only the distinct sampled frames are decoded (decord seeks to the nearest
    keyframe before each). With one, the whole video is decoded once and kept.
    """
    try:
        if cache is not None:
            key = FrameCache.key(path)
            video = cache.get(key)
            if video is None:
                reader = decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=1)
                video = reader.get_batch(list(range(len(reader)))).asnumpy()
                cache.put(key, video)
            indices = np.asarray(choose(len(video)))
            return video[indices], indices
        reader = decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=1)
        indices = np.asarray(choose(len(reader)))
        distinct = np.unique(indices)
        frames = reader.get_batch(distinct.tolist()).asnumpy()
        if len(frames) != len(distinct):
            raise IndexError(f"asked for {len(distinct)} frames, got {len(frames)}")
        return frames[np.searchsorted(distinct, indices)], indices
    except Exception as err:  # decord raises RuntimeError, DECORDError (not a RuntimeError) or IndexError
        raise VideoDecodeError(path, err) from err
