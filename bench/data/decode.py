"""Decoding only the sampled frames, plus an optional per-process cache of whole decoded videos.

Sampled reads go through PyAV (``read_frames_pyav``): it decodes forward from the keyframe before each
needed frame, as decord does, but tells the decoder to drop the non-reference frames it does not need
(a B-frame nothing else predicts from is never needed to reconstruct another frame). It turns frames
by their rotation tag as decord does, and counts only the frames an mp4 edit list shows. The frames it
returns are those decord returns, byte for byte, on every encoding of the conformance matrix
(tests/test_data_conformance.py; where decord itself deviates, the true frames); on Kinetics-like
h264 (keyframes 250 apart, x264's B-pyramid) it costs about a quarter less CPU than decord
(results/perf/NOTES.md). Whole videos for the cache are read by decord.
"""
from __future__ import annotations

import bisect
import os
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import av
import decord
import numpy as np
from av.video.reformatter import VideoReformatter


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


@dataclass(frozen=True)
class PacketIndex:
    """A video stream's packets in decode order and where each frame sits in display order.

    Built by demuxing the whole file (no decoding): the frames the video shows, and the keyframes
    random access starts from. Frame ``i`` is the shown packet with the ``i``-th smallest pts. A
    packet the demuxer marks discard (before an mp4 edit list's start: a clip cut by stream copy
    keeps the frames from the keyframe before the cut) is decoded, as later frames need it, but not
    shown: the decoder drops its frame.
    """

    packets: list
    display_pts: list[int]  # display index -> pts, shown frames only
    keyframes: list[int]  # decode positions of the keyframes
    keyframe_frames: list[int]  # the first shown frame each one leads to, ascending (closed GOPs)

    @property
    def frames(self) -> int:
        return len(self.display_pts)

    @classmethod
    def read(cls, container) -> "PacketIndex":
        stream = container.streams.video[0]
        packets = [p for p in container.demux(stream) if p.size > 0 and p.pts is not None]
        if not packets:
            raise ValueError("no video packets")
        if stream.frames and len(packets) < stream.frames:  # decord raises on such a truncated file too
            raise IndexError(f"the container lists {stream.frames} frames but holds {len(packets)}")
        display_pts = sorted(p.pts for p in packets if not p.is_discard)
        if not display_pts:
            raise ValueError("every video packet lies outside the edit list: nothing is shown")
        keyframes = [i for i, p in enumerate(packets) if p.is_keyframe] or [0]
        return cls(packets, display_pts, keyframes,
                   [bisect.bisect_left(display_pts, packets[i].pts) for i in keyframes])


# Decoders that read ``skip_frame`` anew for every packet (FFmpeg 8, each checked by the conformance
# matrix). Others read it once, when they open: FFmpeg's libdav1d wrapper (AV1) turns NONREF then into
# "decode reference frames only" for the whole stream, so a wanted non-reference frame never comes out.
PER_PACKET_SKIP = frozenset({"h264", "hevc", "mpeg4", "vp8", "vp9"})


def decode_wanted(container, index: PacketIndex, wanted: np.ndarray, skip_unneeded: bool = True) -> Iterator:
    """The decoded ``av.VideoFrame`` of each display index in ``wanted`` (sorted, distinct), in order.

    Decoding restarts at a frame's keyframe only when that keyframe lies past the current position
    (decord's seek rule); with ``skip_unneeded`` a decoder of ``PER_PACKET_SKIP`` drops the
    non-reference frames not wanted (any other decodes every frame).
    """
    codec = container.streams.video[0].codec_context
    codec.thread_count = 1
    skip_unneeded = skip_unneeded and codec.codec.name in PER_PACKET_SKIP
    wanted_pts = {index.display_pts[i] for i in wanted}
    position, segment, drained = 0, -1, False
    pending: dict[int, object] = {}
    for target in wanted:
        pts = index.display_pts[target]
        keyframe = bisect.bisect_right(index.keyframe_frames, target) - 1
        if pts not in pending and keyframe > segment:
            if segment >= 0:
                codec.flush_buffers()
            position, segment, drained = index.keyframes[keyframe], keyframe, False
        while pts not in pending:
            if position < len(index.packets):
                packet = index.packets[position]
                position += 1
                if skip_unneeded:
                    codec.skip_frame = "DEFAULT" if packet.pts in wanted_pts else "NONREF"
                frames = codec.decode(packet)
            elif not drained:
                frames, drained = codec.decode(None), True
            else:
                raise IndexError(f"frame {target} was never decoded")
            pending.update((frame.pts, frame) for frame in frames if frame.pts in wanted_pts)
        yield pending.pop(pts)


def rgb_converter() -> Callable:
    """Decoded frame -> uint8 (H, W, 3) RGB, for the frames of one clip: one reformatter keeps its
    scaling context between frames (``frame.to_ndarray`` builds one per frame, which cost more than the
    conversion: 0.26 vs 0.08 ms per 340x256 frame on the dev machine). One per clip, never per
    process: a context kept across ``fork`` (DataLoader workers) holds swscale's threads and hangs the
    child."""
    reformatter = VideoReformatter()
    return lambda frame: reformatter.reformat(frame, format="rgb24").to_ndarray()


def quarter_turns(frame) -> int:
    """How many quarter turns clockwise decord gives a frame: its display matrix's rotation when that
    is 90, 180 or 270 degrees (decord 0.6 turns by no other angle and ignores mirroring)."""
    degrees = -frame.rotation % 360  # PyAV: degrees counterclockwise, whole, in [-180, 180]
    return degrees // 90 if degrees in (90, 180, 270) else 0


def read_frames_pyav(path: Path, choose: Callable[[int], np.ndarray],
                     skip_unneeded: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Frames at ``choose(frame_count)`` as uint8 (*indices.shape, H, W, 3), and the indices (see module doc)."""
    try:
        with av.open(str(path)) as container:
            index = PacketIndex.read(container)
            indices = np.asarray(choose(index.frames))
            distinct = np.unique(indices)
            to_rgb = rgb_converter()
            decoded = list(decode_wanted(container, index, distinct, skip_unneeded))
            frames = np.stack([to_rgb(frame) for frame in decoded])
        turns = quarter_turns(decoded[0])
        if turns:
            frames = np.ascontiguousarray(np.rot90(frames, -turns, axes=(1, 2)))
        return frames[np.searchsorted(distinct, indices)], indices
    except Exception as err:  # PyAV raises its own FFmpegError subclasses, ValueError or IndexError
        raise VideoDecodeError(path, err) from err


def read_frames(path: Path, choose: Callable[[int], np.ndarray],
                cache: FrameCache | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Frames at ``choose(frame_count)`` as uint8 (*indices.shape, H, W, 3), and the indices.

    Without a cache only the distinct sampled frames are decoded (``read_frames_pyav``). With one,
    the whole video is decoded once by decord and kept.
    """
    if cache is None:
        return read_frames_pyav(path, choose)
    try:
        key = FrameCache.key(path)
        video = cache.get(key)
        if video is None:
            reader = decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=1)
            video = reader.get_batch(list(range(len(reader)))).asnumpy()
            cache.put(key, video)
        indices = np.asarray(choose(len(video)))
        return video[indices], indices
    except Exception as err:  # decord raises RuntimeError, DECORDError (not a RuntimeError) or IndexError
        raise VideoDecodeError(path, err) from err


def read_frames_other(path: Path, choose: Callable[[int], np.ndarray],
                      cache: FrameCache | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The reader ``read_frames`` does not use with this ``cache``, for a video it failed on: decord's
    sampled read behind PyAV's, PyAV's behind the cache's whole-video decord read."""
    return read_frames_decord(path, choose) if cache is None else read_frames_pyav(path, choose)


def read_frames_decord(path: Path, choose: Callable[[int], np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """decord's sampled read (it seeks to the keyframe before each frame it cannot reach by decoding on)."""
    try:
        reader = decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=1)
        indices = np.asarray(choose(len(reader)))
        distinct = np.unique(indices)
        frames = reader.get_batch(distinct.tolist()).asnumpy()
        if len(frames) != len(distinct):
            raise IndexError(f"asked for {len(distinct)} frames, got {len(frames)}")
        return frames[np.searchsorted(distinct, indices)], indices
    except Exception as err:  # decord raises RuntimeError, DECORDError (not a RuntimeError) or IndexError
        raise VideoDecodeError(path, err) from err


def reader_name(reader: Callable, cache: bool) -> str:
    """What a record calls a frame reader (``read_frames``' signature) used with or without the frame
    cache: ``pyav_sampled`` (the sampled reader), ``decord_sampled``, ``decord_frame_cache`` (whole
    videos decoded once by decord and kept), or the function's own name for any other reader."""
    names = {read_frames: "decord_frame_cache" if cache else "pyav_sampled",
             read_frames_other: "pyav_sampled" if cache else "decord_sampled",
             read_frames_pyav: "pyav_sampled", read_frames_decord: "decord_sampled"}
    return names.get(reader, getattr(reader, "__name__", repr(reader)))
