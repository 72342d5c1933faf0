"""The run summary's warning for runs that waited for their data, with the remedy measured for the case.

Each record says what share of its training time the computation waited for the next batch
(``data_wait_fraction``, ``bench.engine.feed``). Above ``WAIT_LIMIT`` the loader, not the model, set
the run's pace, and the summary says so with what was measured to help: a ``prepare``d copy of a real
dataset read from its originals (``PREPARED``, ``PREPARE_COST``), more loader workers where a GPU
run's cores allow them (``MORE_WORKERS``); a run that read the synthetic world's frame cache is
reminded that a process's first run fills it (the default suite's first run of a task in a job waits
about 30% for it). The figures are quoted from the records named beside them
(tests/test_feed.py checks them against those records).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from bench.store.records import RunRecord

WAIT_LIMIT = 0.2
PREPARABLE = ("k400", "ssv2", "list")  # what ``python -m bench.data prepare`` re-encodes


@dataclass(frozen=True)
class CopyGain:
    """ST-Adapter 12x384 trained end to end on Kinetics-shaped originals and on their prepared copy
    (``python -m bench.perf --e2e``: one H200, 16 cores, 15 loader workers)."""

    records: tuple[str, str] = ("results/perf/e2e_k400_original_st_adapter.json",
                                "results/perf/e2e_k400_prepared_st_adapter.json")
    clips_per_s: tuple[float, float] = (282.7, 491.9)
    ratio: tuple[float, float] = (0.507, 0.888)  # of the step alone
    cpu_ms_per_clip: tuple[float, float] = (33.08, 10.16)


@dataclass(frozen=True)
class PrepareCost:
    """``python -m bench.data bench-prepare`` on 32 Kinetics-shaped clips, on the 2-core dev machine
    (the quiet one of three runs; the others, beside other jobs, took 0.70 and 0.83 s of CPU per video)."""

    record: str = "results/perf/prepare_dev-2cpu.json"
    videos_per_s: float = 2.563
    cpu_s_per_video: float = 0.75
    workers: int = 2
    break_even_reads: float = 12.4  # training reads of a video whose CPU savings repay its preparation


@dataclass(frozen=True)
class WorkerGain:
    """Clips/s of 1 and 2 sampled-reading processes side by side on the 2-core dev machine
    (``python -m bench.data profile --scaling 1,2``, Kinetics-shaped clips)."""

    record: str = "results/perf/data_profile_dev-2cpu.json"
    clips_per_s: tuple[float, float] = (14.6, 22.9)


PREPARED, PREPARE_COST, MORE_WORKERS = CopyGain(), PrepareCost(), WorkerGain()


def data_bound_notes(records: Sequence[RunRecord]) -> list[str]:
    """A warning per dataset some of whose runs waited for data more than ``WAIT_LIMIT`` of their
    training time, naming them and the measured remedies (records without the field: none)."""
    starved: dict[str, list[RunRecord]] = {}
    for record in records:
        wait = record.extra.get("data_wait_fraction")
        if wait is not None and wait > WAIT_LIMIT:
            starved.setdefault(record.dataset, []).append(record)
    return [_note(dataset, runs) for dataset, runs in sorted(starved.items())]


def _note(dataset: str, runs: list[RunRecord]) -> str:
    waits = ", ".join(f"{r.method} s{r.seed} {r.extra['data_wait_fraction']:.0%}" for r in runs)
    first = runs[0]
    workers = first.extra.get("loader_workers")
    decoder = first.extra.get("decoder", "unknown")
    remedies = [text for text in (_prepare_remedy(first), _workers_remedy(first)) if text]
    lines = [f"warning: {dataset}: {len(runs)} run(s) waited for data more than {WAIT_LIMIT:.0%} of their training "
             f"time ({waits}; decoder {decoder}, {workers} loader workers): the loader held them back"]
    lines += [f"  remedy: {text}" for text in remedies]
    if decoder == "decord_frame_cache":
        lines.append("  the frame cache decodes each video once per process and serves it from memory afterwards: "
                     "a process's first run waits for that decode")
    elif not remedies:
        lines.append("  no measured remedy is left for this run's setting: more CPU cores per process")
    return "\n".join(lines)


def _prepare_remedy(record: RunRecord) -> str | None:
    """The prepared copy, for a real dataset read from its originals."""
    if record.dataset not in PREPARABLE or (record.config.get("data") or {}).get("prepared"):
        return None
    root = record.config.get("data_root") or "ROOT"
    gain, cost = PREPARED, PREPARE_COST
    where = "" if record.dataset == "k400" else " (measured on Kinetics-shaped h264 only)"
    return (f"a prepared copy, `python -m bench.data prepare --dataset {record.dataset} --root {root} --out COPY`, "
            f"then `--root COPY`{where}. On one H200 with 16 cores and 15 workers it cut the loader's CPU per "
            f"Kinetics-shaped clip from {gain.cpu_ms_per_clip[0]:.1f} to {gain.cpu_ms_per_clip[1]:.1f} ms and took "
            f"ST-Adapter 12x384 from {gain.clips_per_s[0]:.0f} to {gain.clips_per_s[1]:.0f} clips/s "
            f"({gain.ratio[0]:.2f}x to {gain.ratio[1]:.2f}x its step alone); preparing took "
            f"{cost.cpu_s_per_video:.2f} s of CPU per 10-s clip ({cost.videos_per_s:.2f} videos/s with "
            f"{cost.workers} workers on 2 cores), repaid after {cost.break_even_reads:.0f} training reads of each "
            "video there (a 12-epoch K400 run makes 12; README, 'Measured performance')")


def _workers_remedy(record: RunRecord) -> str | None:
    """More loader workers, for a GPU run whose process has cores to spare for them (on the CPU the
    model would compete with them for the cores; not measured there)."""
    workers = record.extra.get("loader_workers")
    cores = int(record.hardware.get("cpu_count") or 0) // max(1, int(record.hardware.get("world_size") or 1))
    if (record.hardware.get("device") != "cuda" or record.extra.get("decoder") == "decord_frame_cache"
            or workers is None or workers + 1 >= cores):
        return None
    one, two = MORE_WORKERS.clips_per_s
    return (f"more `--workers`: this run had {workers} per process and {cores} cores per process (the loader "
            f"grows with its workers while cores are free: {one} -> {two} Kinetics-shaped clips/s from 1 to 2 "
            "decoding processes on 2 cores)")
