"""Loader batches made ready on the training device: copied there, and finished by the device transforms.

A batch of ``device_transforms`` items (uint8 frames + draws) is copied and turned into the model's
input by ``DeviceClipTransform`` on a side stream, so both overlap the step the GPU is running (and
the transform's small host-to-device copies wait for the side stream only, never for that step); a
batch of CPU-transformed clips is only copied. Either way the batch comes back with ``video`` on the
device (``label`` too), ready for the compute stream, and everything else as the loader gave it.
Nothing here waits for the device: the loader pins its batches, so the copies are asynchronous,
and the transforms keep their bookkeeping on the host.
"""
from __future__ import annotations

from typing import Iterable, Iterator

import torch

from .gpu_transforms import DeviceClipTransform
from .spec import ClipSpec


class DeviceBatches:
    """Iterate ``loader``'s batches with ``video`` on ``device`` (``len`` is the loader's)."""

    def __init__(self, loader: Iterable[dict], spec: ClipSpec | None, train: bool, device: torch.device):
        """``spec`` (the dataset's ClipSpec) is needed only for batches of ``device_transforms`` items."""
        self.loader, self.device = loader, device
        self.transform = DeviceClipTransform(spec, train) if spec is not None else None
        self.side_stream = torch.cuda.Stream(device) if device.type == "cuda" else None

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[dict]:
        for batch in self.loader:
            yield self.stage(batch)

    def stage(self, batch: dict) -> dict:
        """The batch with ``video`` (and ``label``) on the device; the other entries stay on the host."""
        rest = {k: v for k, v in batch.items() if k not in ("frames", "video", "label")}
        if self.side_stream is None:
            return {**rest, "video": self._prepare(batch), "label": batch["label"].to(self.device)}
        compute = torch.cuda.current_stream(self.device)
        with torch.cuda.stream(self.side_stream):  # its allocations come from the side stream's own pool
            video = self._prepare(batch)
            label = batch["label"].to(self.device, non_blocking=True)
        compute.wait_stream(self.side_stream)
        for tensor in (video, label):
            tensor.record_stream(compute)  # not reused by the side stream before the compute stream is done
        return {**rest, "video": video, "label": label}

    def _prepare(self, batch: dict) -> torch.Tensor:
        if "frames" not in batch:
            return batch["video"].to(self.device, non_blocking=True)
        if self.transform is None:
            raise ValueError("a batch of uint8 frames needs the dataset's ClipSpec to be finished on the device")
        return self.transform({**batch, "frames": batch["frames"].to(self.device, non_blocking=True)})
