"""``python -m bench.data scan``: decode every listed video once, in parallel, and write a cleaned list.

Outputs under ``out``: ``<split>.txt`` (readable videos, absolute paths; read it back with
``--dataset list --root out``), ``classes.txt``, ``scan_<split>.json`` (counts, every broken or
missing video with its error). Progress goes to ``scan_<split>.progress.jsonl`` as each video
finishes, so an interrupted scan resumes where it stopped.
"""
from __future__ import annotations

import json
import os
from multiprocessing import get_context
from pathlib import Path

import decord

from bench.progress import progress_bar

from .dataset import read_index
from .listfile import VideoEntry, write_list, write_text_atomic
from .progress import ProgressLog

CHUNK = 32  # frames decoded per call: bounds memory on long, large videos


def check_video(path: str) -> dict:
    """Decode every frame of ``path``; {"path", "ok", "frames"} or {"path", "ok": False, "error"}."""
    if not os.path.isfile(path):
        return {"path": path, "ok": False, "error": "missing on disk"}
    try:
        reader = decord.VideoReader(path, ctx=decord.cpu(0), num_threads=1)
        count = len(reader)
        if count == 0:
            raise ValueError("no frames")
        for start in range(0, count, CHUNK):
            wanted = list(range(start, min(start + CHUNK, count)))
            if len(reader.get_batch(wanted).asnumpy()) != len(wanted):
                raise IndexError(f"frames {wanted[0]}-{wanted[-1]} not decodable")
        return {"path": path, "ok": True, "frames": count}
    except Exception as err:  # decord raises RuntimeError, DECORDError or IndexError on bad files
        message = str(err).strip().splitlines()[0] if str(err).strip() else ""
        return {"path": path, "ok": False, "error": f"{type(err).__name__}: {message}"}


def scan(dataset: str, split: str, root: str | Path | None, out: Path, workers: int = os.cpu_count() or 1,
         progress: bool = True) -> dict:
    out = Path(out)
    index = read_index(dataset, split, root)
    paths = list(dict.fromkeys(str(entry.path) for entry in index.entries))
    log = ProgressLog(out / f"scan_{split}.progress.jsonl")
    todo = [path for path in paths if path not in log.done]
    with log, get_context("fork").Pool(workers) as pool:
        for result in progress_bar(pool.imap_unordered(check_video, todo, chunksize=1), total=len(paths),
                           initial=len(paths) - len(todo), desc=f"scan {dataset} {split}", disable=not progress):
            log.append(result)
    readable = [VideoEntry(Path(e.path), e.label) for e in index.entries if log.done[str(e.path)]["ok"]]
    broken = {path: log.done[path]["error"] for path in paths if not log.done[path]["ok"]}
    write_list(out / f"{split}.txt", readable)
    write_text_atomic(out / "classes.txt", "".join(f"{name}\n" for name in index.class_names))
    report = {"dataset": dataset, "split": split, "root": str(index.root), "annotation": str(index.annotation),
              "listed": len(index.entries), "readable": len(readable), "broken": len(broken),
              "errors": broken, "cleaned_list": str(out / f"{split}.txt")}
    write_text_atomic(out / f"scan_{split}.json", json.dumps(report, indent=2) + "\n")
    return report
