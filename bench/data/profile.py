"""``python -m bench.data profile``: one loader worker's CPU cost per clip, stage by stage, on real-format files.

Stages (each timed with ``time.process_time`` over every clip of the fixture, ``repeats`` times; min and
median kept, since other jobs sharing the machine only ever add time): open + index, decode, colour
conversion (PyAV: decoded frame -> RGB separately; the other readers do both in one call), the
recipe's CPU transforms (resize, crop + flip, RandAugment, random resized crop, normalisation),
collate of a batch (float32 vs uint8) and the pickling a worker does to hand a batch to the main
process (through shared memory, as the DataLoader does), and with ``scaling`` the clips/s of n
decoding processes side by side (how many cores' worth the machine gives). Readers: every one importable here of
``READERS`` (run once per environment to compare decord 0.6 and decord2, which share a module name).
"""
from __future__ import annotations

import importlib.util
import json
import os
import platform
import socket
import statistics
import time
from dataclasses import asdict
from datetime import datetime, timezone
from multiprocessing.reduction import ForkingPickler
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .decode import read_frames_decord, read_frames_pyav
from .fixtures import KINETICS_FORMAT, SSV2_FORMAT, FixtureConfig, ensure_fixture
from .listfile import DatasetIndex
from .kinetics import read_kinetics
from .sampling import sample_indices
from .spec import ClipSpec
from .ssv2 import read_ssv2
from .transforms import ClipTransform, crop, random_resized_crop_box, resize_short_side

K400_CLIP = ClipSpec()
SSV2_CLIP = ClipSpec(sampling="uniform", augment="ssv2", test_crops=3, test_clips=1)


def _reader_decord(path, choose):
    return read_frames_decord(Path(path), choose)


def _reader_pyav(path, choose):
    return read_frames_pyav(Path(path), choose)


def _reader_pyav_noskip(path, choose):
    return read_frames_pyav(Path(path), choose, skip_unneeded=False)


def _reader_torchcodec(path, choose):
    from torchcodec.decoders import VideoDecoder
    decoder = VideoDecoder(str(path), num_ffmpeg_threads=1, dimension_order="NHWC", seek_mode="exact")
    indices = np.asarray(choose(decoder.metadata.num_frames))
    distinct = np.unique(indices)
    frames = decoder.get_frames_at(distinct.tolist()).data.numpy()
    return frames[np.searchsorted(distinct, indices)], indices


READERS: dict[str, tuple[str, Callable]] = {  # name: (module it needs, reader)
    "decord": ("decord", _reader_decord),
    "pyav": ("av", _reader_pyav),
    "pyav_noskip": ("av", _reader_pyav_noskip),
    "torchcodec": ("torchcodec", _reader_torchcodec),
}


def cpu_ms_per_item(fn: Callable[[], object], repeats: int, items: int) -> dict:
    """CPU ms per item of ``fn`` (which handles ``items`` items), min and median of ``repeats``."""
    fn()  # warm-up: imports, allocator, first-open costs
    times = []
    for _ in range(repeats):
        start = time.process_time()
        fn()
        times.append((time.process_time() - start) / items * 1000)
    return {"min": round(min(times), 2), "median": round(statistics.median(times), 2)}


def _decode_stages(paths: list[Path], spec: ClipSpec, train: bool, repeats: int) -> dict:
    """PyAV's reader split into open+index, decode and RGB conversion (same frames as ``read_frames_pyav``)."""
    import av

    from .decode import PacketIndex, decode_wanted, rgb_converter

    def opened():
        for path in paths:
            with av.open(str(path)) as container:
                PacketIndex.read(container)

    def decoded(convert: bool):
        def run():
            for number, path in enumerate(paths):
                rng = np.random.default_rng(number)
                with av.open(str(path)) as container:
                    index = PacketIndex.read(container)
                    wanted = np.unique(sample_indices(spec, index.frames, train, rng))
                    to_rgb = rgb_converter()
                    for frame in decode_wanted(container, index, wanted):
                        if convert:
                            to_rgb(frame)
        return run

    out = {"open_index": cpu_ms_per_item(opened, repeats, len(paths))}
    with_decode = cpu_ms_per_item(decoded(False), repeats, len(paths))
    with_rgb = cpu_ms_per_item(decoded(True), repeats, len(paths))
    out["decode"] = {k: round(with_decode[k] - out["open_index"][k], 2) for k in with_decode}
    out["rgb_conversion"] = {k: round(with_rgb[k] - with_decode[k], 2) for k in with_rgb}
    return out


def _transform_stages(clips: list[np.ndarray], spec: ClipSpec, repeats: int) -> dict:
    """The recipe's CPU transforms of one training clip, each alone, on decoded (1, T, H, W, 3) uint8 clips."""
    size = spec.input_size
    full = ClipTransform(spec, train=True)
    tensors = [torch.from_numpy(clip[0]).permute(0, 3, 1, 2) for clip in clips]
    stages: dict[str, Callable] = {}
    if spec.augment == "k400":
        resized = [resize_short_side(t, spec.short_side_range[1]) for t in tensors]
        stages["resize_short_side"] = lambda: [resize_short_side(t, spec.short_side_range[1]) for t in tensors]
        stages["crop_flip"] = lambda: [crop(t, 3, 5, size, size).flip(-1).contiguous() for t in resized]
    else:
        from .transforms import apply_to_every_frame
        from PIL import Image
        stages["rand_augment"] = lambda: [np.stack([np.asarray(i) for i in apply_to_every_frame(
            full.rand_augment, [Image.fromarray(f) for f in clip[0]], n)]) for n, clip in enumerate(clips)]
        boxes = [random_resized_crop_box(*t.shape[-2:], spec.crop_scale, np.random.default_rng(n))
                 for n, t in enumerate(tensors)]
        stages["random_resized_crop"] = lambda: [torch.nn.functional.interpolate(
            crop(t, *box), size=(size, size), mode="bicubic", align_corners=False, antialias=True)
            for t, box in zip(tensors, boxes)]
    cropped = [t[..., :size, :size].contiguous() for t in tensors]
    stages["normalise_float32"] = lambda: [full._normalise(t) for t in cropped]
    stages["whole_cpu_transform"] = lambda: [full(clip, np.random.default_rng(n)) for n, clip in enumerate(clips)]
    return {name: cpu_ms_per_item(fn, repeats, len(clips)) for name, fn in stages.items()}


def _batch_stages(spec: ClipSpec, batch_size: int, repeats: int) -> dict:
    """Collate (stack, then into shared memory) and the worker-side pickling of the batch, for the float32
    clips the CPU path sends and the uint8 frames the device path sends (an upper bound: a worker's
    collate stacks straight into shared memory, one copy fewer)."""
    shapes = {"float32": (3, spec.num_frames, spec.input_size, spec.input_size),
              "uint8": (spec.num_frames, KINETICS_FORMAT.height, KINETICS_FORMAT.width, 3)}
    out = {}
    for dtype, shape in shapes.items():
        clips = [torch.ones(shape, dtype=getattr(torch, dtype)) for _ in range(batch_size)]

        def collate():
            batch = torch.stack(clips).share_memory_()
            ForkingPickler.dumps(batch)
            return batch

        timing = cpu_ms_per_item(collate, repeats, batch_size)
        out[f"collate_share_{dtype}"] = {**timing, "batch_mb": round(
            batch_size * int(np.prod(shape)) * torch.tensor([], dtype=getattr(torch, dtype)).element_size() / 1e6, 1)}
    return out


def _simd_flags() -> list[str]:
    """Which SIMD extensions the CPU shows (FFmpeg's decoders and swscale pick their code by them)."""
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split("flags", 2)[1].split("\n")[0].split())
    except (OSError, IndexError):
        return []
    return sorted(flags & {"sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512_vnni"})


def _read_all(job: tuple[list[str], ClipSpec, int]) -> tuple[float, float]:
    """(CPU s, wall s) of reading every clip in ``paths`` ``passes`` times with the suite's reader."""
    paths, spec, passes = job
    torch.set_num_threads(1)
    start_cpu, start = time.process_time(), time.perf_counter()
    for n in range(passes):
        for number, path in enumerate(paths):
            rng = np.random.default_rng([n, number])
            read_frames_pyav(Path(path), lambda count: sample_indices(spec, count, True, rng))
    return time.process_time() - start_cpu, time.perf_counter() - start


def decode_scaling(paths: list[Path], spec: ClipSpec, processes: list[int], passes: int = 2) -> list[dict]:
    """Clips/s of ``n`` processes decoding side by side, for each ``n``: how many cores' worth of decoding
    the machine really gives (a VM's vCPUs can be fewer physical cores, or share them)."""
    from multiprocessing import get_context
    rows = []
    for n in processes:
        with get_context("forkserver").Pool(n) as pool:
            pool.map(_read_all, [([str(p) for p in paths[:1]], spec, 1)] * n)  # start-up and imports
            start = time.perf_counter()
            results = pool.map(_read_all, [([str(p) for p in paths], spec, passes)] * n)
            wall = time.perf_counter() - start
        clips = n * len(paths) * passes
        rows.append({"processes": n, "clips_per_s": round(clips / wall, 1),
                     "cpu_ms_per_clip": round(sum(c for c, _ in results) / clips * 1000, 2),
                     "wall_ms_per_clip_per_process": round(sum(w for _, w in results) / clips * 1000, 2)})
    return rows


def run_profile(cache: Path, clips: int = 16, repeats: int = 3, batch_size: int = 32,
                workers: int = os.cpu_count() or 1,
                readers: tuple[str, ...] | None = None, tag: str | None = None, out: Path | None = None,
                scaling: list[int] | None = None) -> dict:
    """Profile every stage on Kinetics- and SSv2-shaped fixtures (written under ``cache`` on first use)."""
    torch.set_num_threads(1)
    available = [name for name, (module, _) in READERS.items()
                 if (readers is None or name in readers) and importlib.util.find_spec(module) is not None]
    fixtures = {"k400": (FixtureConfig("k400", clips, 0, fmt=KINETICS_FORMAT), read_kinetics, K400_CLIP),
                "ssv2": (FixtureConfig("ssv2", clips, 0, fmt=SSV2_FORMAT), read_ssv2, SSV2_CLIP)}
    results = {}
    for name, (config, reader, spec) in fixtures.items():
        index: DatasetIndex = reader("train", ensure_fixture(config, cache, workers))
        paths = [entry.path for entry in index.entries]
        result: dict = {"fixture": asdict(config), "readers": {}}
        for train, what in ((True, "train"), (False, "eval")):
            for reader_name in available:
                read = READERS[reader_name][1]

                def run(read=read, train=train):
                    for number, path in enumerate(paths):
                        rng = np.random.default_rng(number)
                        read(path, lambda n: sample_indices(spec, n, train, rng))
                result["readers"][f"{reader_name}_{what}"] = cpu_ms_per_item(run, repeats, len(paths))
        if "pyav" in available:
            result["pyav_stages_train"] = _decode_stages(paths, spec, True, repeats)
        decoded = [read_frames_pyav(path, lambda n: sample_indices(spec, n, True, np.random.default_rng(i)))[0]
                   for i, path in enumerate(paths)]
        result["transforms_train"] = _transform_stages(decoded, spec, repeats)
        if scaling:
            result["decode_scaling_train"] = decode_scaling(paths, spec, scaling)
        results[name] = result
    results["batch"] = _batch_stages(K400_CLIP, batch_size, repeats)
    host = socket.gethostname()
    versions = {"torch": torch.__version__, "python": platform.python_version()}
    for module in ("decord", "av", "torchcodec"):
        if importlib.util.find_spec(module) is not None:
            versions[module] = getattr(__import__(module), "__version__", "?")
    record = {"kind": "data_profile", "tag": tag or host, "host": host, "cpu_count": os.cpu_count(),
              "cpu_flags": _simd_flags(),
              "load_average_1min": round(os.getloadavg()[0], 2), "clips": clips, "repeats": repeats,
              "measure": "CPU ms per clip (process_time), min and median over repeats; one thread",
              "versions": versions, "results": results,
              "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    out = out or Path("results/perf") / f"data_profile_{record['tag']}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n")
    return {**record, "path": str(out)}
