"""Progress for long work that reads well in a terminal and in a log file.

On a terminal, a tqdm bar. Anywhere else (SLURM logs, CI, the GPU machine, a pipe), a redrawn bar
leaves one line per redraw, so a two-minute run leaves hundreds of lines; instead, one plain line at
every ``LINE_PERCENT`` percent of the work or every ``LINE_SECONDS`` seconds, whichever comes first.
Both take the subset of tqdm's interface the suite uses: iteration, ``update``, ``set_postfix``,
``write``, ``close`` and use as a context manager.
"""
from __future__ import annotations

import os
import sys
import time
from typing import Any, Iterable, Iterator

from tqdm import tqdm

LINE_PERCENT = 10
LINE_SECONDS = 60.0


def interactive() -> bool:
    """Bars only on a terminal; ``BENCH_PROGRESS=lines`` or ``=bar`` forces one or the other."""
    forced = os.environ.get("BENCH_PROGRESS")
    if forced in ("lines", "bar"):
        return forced == "bar"
    return sys.stderr.isatty()


class LineProgress:
    """A progress report as occasional plain lines on stderr."""

    def __init__(self, iterable: Iterable | None = None, total: int | None = None, desc: str = "",
                 initial: int = 0, disable: bool = False, unit: str = "it", **_: Any) -> None:
        self.iterable = iterable
        self.total = total if total is not None else (len(iterable) if hasattr(iterable, "__len__") else None)
        self.desc, self.unit, self.disable = desc, unit, disable
        self.n = initial
        self.postfix = ""
        self._started = self._last_time = time.monotonic()
        self._start_n = initial
        self._last_bucket = self._bucket()
        self._closed = False
        self._printed_n = initial

    def _bucket(self) -> int:
        return (100 * self.n // self.total) // LINE_PERCENT if self.total else 0

    def __iter__(self) -> Iterator:
        for item in self.iterable:
            yield item
            self.update(1)
        self.close()

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        bucket = self._bucket()
        if bucket > self._last_bucket or now - self._last_time >= LINE_SECONDS:
            self._last_bucket, self._last_time = bucket, now
            self._line()

    def set_postfix(self, refresh: bool = True, **values: Any) -> None:
        self.postfix = ", ".join(f"{k}={v}" for k, v in values.items())

    def write(self, text: str) -> None:
        """A message between progress lines, on stdout as tqdm.write puts it."""
        print(text, flush=True)

    def _line(self, final: bool = False) -> None:
        if self.disable:
            return
        elapsed = time.monotonic() - self._started
        rate = (self.n - self._start_n) / elapsed if elapsed > 0 else 0.0
        done = f"{self.n}/{self.total} ({100 * self.n / self.total:.0f}%)" if self.total else f"{self.n}"
        tail = f", {self.postfix}" if self.postfix else ""
        end = ", done" if final else ""
        print(f"{self.desc}: {done} in {elapsed:.0f} s, {rate:.3g} {self.unit}/s{tail}{end}", file=sys.stderr,
              flush=True)
        self._printed_n = self.n

    def close(self) -> None:
        if not self._closed and self.n > self._start_n and self.n != self._printed_n:
            self._line(final=True)
        self._closed = True

    def __enter__(self) -> "LineProgress":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def progress_bar(iterable: Iterable | None = None, **kwargs: Any) -> tqdm | LineProgress:
    """A tqdm bar on a terminal, occasional lines elsewhere (tqdm's keyword arguments)."""
    if interactive():
        return tqdm(iterable, dynamic_ncols=True, mininterval=1.0, **kwargs)
    return LineProgress(iterable, **kwargs)
