"""Stopping a job without losing a finished optimizer step.

SLURM tells a job to stop with SIGUSR2 (preemption, or 90 s before the time limit; submitit then
checkpoints the job and requeues it) or SIGTERM (``scontrol requeue``, ``scancel``: submitit only
logs it, and SIGKILL follows ``KillWait`` seconds later). A signal can arrive in the middle of an
optimizer step, when parameters, optimizer moments and the schedule are half updated, so nothing
is saved from the handler itself: the handler records the request, the training loop honours it at
the next step boundary (saving the run's checkpoint there, at most one step later), and only then is
the job's original handler called (submitit's requeue for SIGUSR2; for SIGTERM the process waits to
be killed, so it neither reports itself finished nor trains on).

Both signals can come together, in either order (submitit's simulated preemption sends SIGTERM, then
SIGUSR2): SIGUSR2 wins, since only its handler requeues the job, even when it arrives while the
process already waits to be killed.
"""
from __future__ import annotations

import logging
import signal
import time
from types import FrameType
from typing import Callable

log = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGUSR2, signal.SIGTERM)
KILL_WAIT_S = 120.0  # SLURM's KillWait is 30 s by default; after that long, give up waiting


class StopRequests:
    """Stop signals noted by a handler, taken at the next safe point of the job's main loop."""

    def __init__(self) -> None:
        self._pending: dict[int, FrameType | None] = {}
        self._previous: dict[int, object] = {}

    def install(self) -> None:
        """Catch the stop signals in this (main) thread, keeping the handlers already there (submitit's)."""
        for signum in STOP_SIGNALS:
            self._previous[signum] = signal.getsignal(signum)
            signal.signal(signum, self.note)

    def note(self, signum: int, frame: FrameType | None = None) -> None:
        """The handler: remember the request; the loop acts on it at its next step boundary."""
        log.warning("caught %s: the run saves at its next step boundary and stops", signal.Signals(signum).name)
        self._pending[signum] = frame

    @property
    def pending(self) -> bool:
        return bool(self._pending)

    @property
    def signal_name(self) -> str:
        return "+".join(signal.Signals(signum).name for signum in sorted(self._pending)) or "nothing"

    def honour(self, save: Callable[[], None] | None) -> None:
        """Save (if a run is in progress), then hand the stop to the handler that was there before."""
        if save is not None:
            save()
        if signal.SIGTERM in self._pending and signal.SIGUSR2 not in self._pending:
            self._call_previous(signal.SIGTERM)
            log.warning("saved; waiting for SLURM to stop the job")
            deadline = time.monotonic() + KILL_WAIT_S
            while signal.SIGUSR2 not in self._pending:  # a requeue request may still come
                if time.monotonic() > deadline:
                    raise SystemExit(1)
                time.sleep(0.1)
        self._call_previous(signal.SIGUSR2)  # submitit: checkpoint the job, requeue it, exit

    def _call_previous(self, signum: int) -> None:
        frame = self._pending.get(signum)
        self._pending.clear()  # one stop, whichever signals asked for it
        previous = self._previous.get(signum)
        if callable(previous):
            previous(signum, frame)


STOPS = StopRequests()
