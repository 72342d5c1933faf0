"""An append-only JSON-lines log of finished items, so long parallel jobs resume after interruption."""
from __future__ import annotations

import json
from pathlib import Path


class ProgressLog:
    """``done`` maps each finished item's "path" to its record; ``append`` adds one and flushes it.

    A run killed mid-write leaves at most one cut last line; it is ignored on reload (that item is
    simply redone) and a newline is added so the next record starts on its own line.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self.done: dict[str, dict] = {}
        self._handle = None
        if self.path.is_file():
            for line in self.path.read_text().splitlines():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue
                self.done[record["path"]] = record

    def __enter__(self) -> "ProgressLog":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        cut = self.path.is_file() and self.path.stat().st_size and not self.path.read_bytes().endswith(b"\n")
        self._handle = open(self.path, "a")
        if cut:
            self._handle.write("\n")
        return self

    def append(self, record: dict) -> None:
        self._handle.write(json.dumps(record) + "\n")
        self._handle.flush()
        self.done[record["path"]] = record

    def __exit__(self, *exc) -> None:
        self._handle.close()
