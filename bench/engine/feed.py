"""Whether the training loop was fed: the time its computation waited for data, and how busy the GPU was.

A record must say whether its run was data-bound: a user should never need a separate benchmark to
learn that a run was starved. Every figure is a share of the training time the record's
``train_time_s`` covers (so each epoch's first batch, the loader's start-up, is outside both, as it
is outside the throughput):

- ``data_wait``: the time the step's computation stood still waiting for its next batch. On the
  CPU the computation is this thread, so it is the time this thread spent getting the batch (the
  loader's ``next`` and staging it, ``DeviceBatches``). On CUDA the compute stream runs ahead of this
  thread, and the host's wait overlaps the step the GPU is still running (a loader a little slower
  than the step keeps this thread waiting nearly all the time while the GPU is nearly always busy);
  what is lost is the time the compute stream sat idle between the end of a micro-batch's backward
  and the next batch being staged on it, with the side stream's device transforms done: CUDA events
  recorded just before and just after the fetch.
- ``host_wait``: the time this thread spent getting the next batch, on either device (on the CPU
  it is ``data_wait``). On CUDA it says whether the loader is the limit at all, not how much.
- ``gpu_busy`` (CUDA only): the time the compute stream had a step's work, i.e. each optimizer
  step's span (events before its first forward and after its optimizer step) less its data waits.
  An upper bound on kernel time: gaps between the kernels of a step (launch latency, a host-bound
  step) count as busy; the time between steps (bookkeeping, curves, checkpoints) does not, and
  neither does the side stream's own work.

Cost: two ``perf_counter`` calls per micro-batch (with the bookkeeping, 1.2-1.3 us per step on the
2-core dev machine); on CUDA also two events per micro-batch and two per optimizer step (each an
asynchronous ``cudaEventRecord``; not timed on a GPU yet), read once the GPU has passed them
(``query``, no synchronisation). The only wait is one ``synchronize`` of the last event at each
epoch's end (and before a checkpoint on a stop request), when the GPU has at most an optimizer
step left.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Iterator

import torch


@dataclass
class FeedTotals:
    """Seconds, summed; what ``Progress`` carries across epochs and attempts."""

    data_wait_s: float = 0.0
    host_wait_s: float = 0.0
    gpu_busy_s: float = 0.0


class FeedMeter:
    """Times one epoch's fetches (``fetch``) and steps (``step_began``/``step_ended``) on ``device``."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.totals = FeedTotals()
        self._step_start: torch.cuda.Event | None = None
        self._pending: list[tuple[bool, torch.cuda.Event, torch.cuda.Event]] = []  # (a stall?, start, end)

    def _event(self) -> torch.cuda.Event | None:
        """An event recorded now on the current (compute) stream; None off CUDA."""
        if not self.cuda:
            return None
        event = torch.cuda.Event(enable_timing=True)
        event.record()
        return event

    def fetch(self, batches: Iterator[dict]) -> dict:
        """``next(batches)``, timed."""
        before = self._event()
        began = time.perf_counter()
        batch = next(batches)
        waited = time.perf_counter() - began
        self.totals.host_wait_s += waited
        if before is None:
            self.totals.data_wait_s += waited
        else:
            self._pending.append((True, before, self._event()))
        return batch

    def step_began(self) -> None:
        self._step_start = self._event()

    def step_ended(self) -> None:
        if self._step_start is not None:
            self._pending.append((False, self._step_start, self._event()))
            self._step_start = None
        self._resolve(wait=False)

    def _resolve(self, wait: bool) -> None:
        """Fold in the event pairs the GPU has passed (all of them with ``wait``)."""
        if wait and self._pending:
            self._pending[-1][2].synchronize()  # one stream: the last event completes after the others
        left = []
        for stall, start, end in self._pending:
            if not (wait or end.query()):
                left.append((stall, start, end))
                continue
            seconds = start.elapsed_time(end) / 1000
            if stall:  # inside a step's span: data wait, not busy
                self.totals.data_wait_s += seconds
                self.totals.gpu_busy_s -= seconds
            else:
                self.totals.gpu_busy_s += seconds
        self._pending = left

    def take(self) -> FeedTotals:
        """Everything measured so far (waiting for the GPU to pass the last event), and start afresh."""
        self._resolve(wait=True)
        totals, self.totals = self.totals, FeedTotals()
        return totals
