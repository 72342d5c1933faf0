"""VideoDataset: a video list + ClipSpec -> sampled, decoded, augmented clips; and the loader around it."""
from __future__ import annotations

import logging
import random
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from .decode import FrameCache, VideoDecodeError, process_frame_cache, read_frames, read_frames_other, reader_name
from .gpu_transforms import collate_frames, pack_draw
from .holdout import HoldoutSpec
from .kinetics import read_kinetics
from .listfile import DatasetIndex, read_list_dataset
from .robust import AllVideosBrokenError, BrokenVideos, ReaderFallbacks, replacement_walk
from .sampling import sample_indices
from .spec import ClipSpec
from .ssv2 import read_ssv2
from .synthetic import TASKS, SynthConfig, ensure_synthetic
from .transforms import ClipTransform

logger = logging.getLogger("bench.data")
DATASETS = ("k400", "ssv2", "list", *TASKS)


class VideoDataset(Dataset):
    """Clips of one split. Item: {"video", "label", "index", "source_index", "replaced", "fallback"}.

    ``video`` is (3, T, S, S) in training and (views, 3, T, S, S) at test. With ``device_transforms``
    an item holds the decoded uint8 ``frames`` (views, T, H, W, 3) and, in training, the packed ``draw``
    instead, for ``gpu_transforms.DeviceClipTransform`` to finish on the GPU (batch them with
    ``collate_fn``); the result is the same clip. The randomness of item i
    comes from a generator seeded by (seed, epoch, i) only, so it does not depend on worker count or
    order; call ``set_epoch`` before each epoch (the epoch lives in shared memory, so persistent
    workers see it too). A broken video (no reader decodes it) is replaced by the next readable one
    in the list; ``fallback`` marks a source video the loader's reader failed on and the other reader
    read (its frames, sampled with the same draw).
    """

    frame_reader = staticmethod(read_frames)  # (path, choose, cache) -> (frames, indices); swapped by benchmarks
    fallback_reader = staticmethod(read_frames_other)  # the same, by the reader frame_reader does not use

    def __init__(self, name: str, split: str, index: DatasetIndex, clip: ClipSpec, train: bool,
                 seed: int = 0, frame_cache: bool = False, device_transforms: bool = False):
        self.name, self.split, self.clip, self.train, self.seed = name, split, clip, train, seed
        self.device_transforms = device_transforms
        self.collate_fn = collate_frames if device_transforms else None
        self.source_list = index.entries
        self.video_ids = index.video_ids()
        self.class_names = index.class_names
        self.num_classes = len(index.class_names)
        self.annotation = index.annotation
        self.missing = index.missing
        self.frame_cache = frame_cache
        self.transform = ClipTransform(clip, train)
        self.broken = BrokenVideos()
        self.fallbacks = ReaderFallbacks()
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()
        missing = set(index.missing)
        for i, entry in enumerate(self.source_list):
            if entry.path in missing:
                self.broken.mark(i, entry.path, "missing on disk", log=False)
        if missing:
            logger.warning("%s %s: %d of %d clips listed in %s are missing on disk (first: %s); their samples "
                           "use the next readable video", name, split, len(missing), len(self.source_list),
                           index.annotation, index.missing[0])

    def __len__(self) -> int:
        return len(self.source_list)

    @property
    def decoder(self) -> str:
        """The reader that reads this split's frames, as records name it (``decode.reader_name``)."""
        return reader_name(self.frame_reader, self.frame_cache)

    @property
    def fallback_decoder(self) -> str:
        """The reader that reads a video the first one fails on (records count those videos)."""
        return reader_name(self.fallback_reader, self.frame_cache)

    def set_epoch(self, epoch: int) -> None:
        self._epoch.fill_(epoch)

    def sample_rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, int(self._epoch), index])

    def __getitem__(self, index: int) -> dict:
        cache = process_frame_cache() if self.frame_cache else None
        for source in replacement_walk(index, len(self)):
            if source in self.broken:
                continue
            read = self._read(index, source, cache)
            if read is None:
                continue
            frames, rng = read
            return {**self._clip(frames, rng), "label": self.source_list[source].label, "index": index,
                    "source_index": source, "replaced": source != index, "fallback": source in self.fallbacks}
        first = min(self.broken.errors, default=None)
        example = "" if first is None else f" (first: {self.source_list[first].path}: {self.broken.errors[first]})"
        raise AllVideosBrokenError(
            f"{self.name} {self.split}: none of the {len(self)} videos listed in {self.annotation} can be decoded"
            f"{example}; check the root and the list, or run `python -m bench.data scan --dataset {self.name} "
            "--root ROOT --out DIR` and train on the cleaned list it writes (--datasets list --root list=DIR)")

    def check_readable(self) -> None:
        """Read one sample as the first batch will: a dataset none of whose videos decodes raises
        ``AllVideosBrokenError`` now (``bench.run`` checks before any job starts), not inside a job.
        Quietly: the videos it meets are named again, once, by the run that reads them."""
        self.broken.quiet = self.fallbacks.quiet = True
        try:
            if len(self):
                self[0]
        finally:
            self.broken.quiet = self.fallbacks.quiet = False

    def _read(self, index: int, source: int,
              cache: FrameCache | None) -> tuple[np.ndarray, np.random.Generator] | None:
        """Sample ``index``'s frames of video ``source`` and the sample's generator after the draw, or
        None when no reader decodes the video (it is then marked broken). Each reader starts from a
        fresh generator (a replacement or fallback looks the same however it was reached)."""
        path = self.source_list[source].path
        failure = None
        if source not in self.fallbacks:
            rng = self.sample_rng(index)
            try:
                return self.frame_reader(path, self._chooser(rng), cache)[0], rng
            except VideoDecodeError as err:
                failure = err
        rng = self.sample_rng(index)
        try:
            frames = self.fallback_reader(path, self._chooser(rng), cache)[0]
        except VideoDecodeError as err:
            self.broken.mark(source, path, (failure or err).cause)
            return None
        if failure is not None:
            self.fallbacks.mark(source, path, failure.cause)
        return frames, rng

    def _chooser(self, rng: np.random.Generator):
        return lambda count: sample_indices(self.clip, count, self.train, rng)

    def _clip(self, frames: np.ndarray, rng: np.random.Generator) -> dict:
        if not self.device_transforms:
            return {"video": self.transform(frames, rng)}
        item = {"frames": torch.from_numpy(frames)}
        if self.train:
            item["draw"] = pack_draw(self.transform.draw(*frames.shape[2:4], rng))
        return item


def read_index(name: str, split: str, root: str | Path | None = None, synth: SynthConfig | None = None) -> DatasetIndex:
    """The video list of a dataset split, without decoding anything."""
    if name == "k400":
        return read_kinetics(split, root)
    if name == "ssv2":
        return read_ssv2(split, root)
    if name == "list":
        return read_list_dataset(split, root)
    if name in TASKS:
        return read_list_dataset(split, ensure_synthetic(name, synth, root))
    raise ValueError(f"unknown dataset {name!r}; choose one of {DATASETS}")


def build_dataset(name: str, split: str, clip: ClipSpec, train: bool, root: str | Path | None = None,
                  seed: int = 0, *, synth: SynthConfig | None = None, frame_cache: bool | None = None,
                  device_transforms: bool = False, holdout: HoldoutSpec | None = None) -> VideoDataset:
    """A dataset by name. ``root`` None -> env var / user config (k400, ssv2, list) or the synthetic cache.

    ``frame_cache`` (default: on for the synthetic tasks only) keeps decoded videos in memory per process.
    With ``holdout`` (a tuning trial) both splits come from the training list: "train" is the list
    without its held-out part, "val" the held-out part; the validation list is never opened.
    """
    if holdout is None:
        index = read_index(name, split, root, synth)
    else:
        rest, held = holdout.split(read_index(name, "train", root, synth))
        index = {"train": rest, "val": held}[split]
    if frame_cache is None:
        frame_cache = name in TASKS
    return VideoDataset(name, split, index, clip, train, seed, frame_cache, device_transforms)


def worker_init_fn(worker_id: int) -> None:
    """Seed Python, NumPy and torch in a worker from the seed the DataLoader gave it.

    That seed is drawn per epoch from the loader's generator, so it is fixed by (seed, epoch, worker);
    one intra-op thread per worker keeps workers from oversubscribing the cores.
    """
    seed = torch.initial_seed() % 2**32
    random.seed(seed)
    np.random.seed(seed)
    torch.set_num_threads(1)


def build_loader(dataset: VideoDataset, batch_size: int, num_workers: int, shuffle: bool, seed: int = 0,
                 drop_last: bool = False, pin_memory: bool = False,
                 multiprocessing_context: str | None = None) -> DataLoader:
    """The suite's DataLoader: seeded shuffling, seeded workers, persistent workers when there are any.

    ``multiprocessing_context="forkserver"`` starts workers from a clean process: needed when this
    process has already run FFmpeg's threaded decoders (a forked child can inherit a held lock).
    """
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, num_workers=num_workers,
                      multiprocessing_context=multiprocessing_context if num_workers > 0 else None,
                      generator=torch.Generator().manual_seed(seed), worker_init_fn=worker_init_fn,
                      drop_last=drop_last, pin_memory=pin_memory, persistent_workers=num_workers > 0,
                      prefetch_factor=4 if num_workers > 0 else None)
