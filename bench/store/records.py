"""The results store: one JSON record per finished run under ``results/runs/``.

Records are the single source of truth for every table, plot and regression check, so they carry
full provenance (config, code version, packages, hardware) and are validated when read: a malformed
record is rejected with the file and the field named, never silently skipped.

Schema versions: 2 added ``predictions`` (the per-video outputs file beside the record, see
``bench.store.predictions``) and ``curves`` (training curves, see ``bench.store.curves``). Version 1
records still load, with both None: the report marks them "no per-video outputs".
"""
from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from bench.atomic import atomic_write
from bench.config import ENGINE_VERSION
from bench.store.curves import curves_problem

log = logging.getLogger(__name__)

SCHEMA_VERSION = 2
READABLE_VERSIONS = (1, 2)
RUNS_SUBDIR = "runs"
RECORD_SUFFIX = ".json"
TUNING_SUBDIR = "tuning"  # RESULTS/tuning is the results folder of the tuning trials (bench.tuning)


class RecordError(ValueError):
    """A record file that does not follow the schema."""

    def __init__(self, path: Path | str, field_name: str, problem: str):
        self.path = Path(path)
        self.field = field_name
        super().__init__(f"{path}: field '{field_name}': {problem}")


@dataclass(frozen=True)
class RunRecord:
    """Everything measured and known about one finished (method, dataset, backbone, recipe, seed) run."""

    method: str
    dataset: str
    backbone: str
    recipe: str
    seed: int
    config_hash: str
    config: dict[str, Any]
    top1: float
    top5: float
    params_trainable: int
    params_total: int
    gflops_per_view: float
    views: int
    wall_time_s: float
    throughput_clips_per_s: float
    peak_memory_bytes: int
    broken_videos: int
    git_commit: str
    git_dirty: bool
    packages: dict[str, str]
    hardware: dict[str, Any]
    created_at: str
    per_class_top1: list[float] = field(default_factory=list)
    fingerprint: dict[str, Any] = field(default_factory=dict)  # provenance.fingerprint(); {} in older records
    extra: dict[str, Any] = field(default_factory=dict)
    predictions: dict[str, Any] | None = None  # PREDICTIONS_FIELDS: the per-video outputs beside the record
    curves: dict[str, Any] | None = None  # bench.store.curves: loss, lr, throughput, top-1 over training
    schema_version: int = SCHEMA_VERSION

    @property
    def stem(self) -> str:
        """The run's name: its record, predictions and work folder are all named after it."""
        return f"{self.dataset}__{self.backbone}__{self.method}__s{self.seed}__{self.config_hash}"

    @property
    def file_name(self) -> str:
        return self.stem + RECORD_SUFFIX

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True) + "\n"


_FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "method": (str,), "dataset": (str,), "backbone": (str,), "recipe": (str,), "seed": (int,),
    "config_hash": (str,), "config": (dict,), "top1": (float, int), "top5": (float, int),
    "params_trainable": (int,), "params_total": (int,), "gflops_per_view": (float, int),
    "views": (int,), "wall_time_s": (float, int), "throughput_clips_per_s": (float, int),
    "peak_memory_bytes": (int,), "broken_videos": (int,), "git_commit": (str,), "git_dirty": (bool,),
    "fingerprint": (dict,),
    "packages": (dict,), "hardware": (dict,), "created_at": (str,), "per_class_top1": (list,),
    "extra": (dict,), "predictions": (dict, type(None)), "curves": (dict, type(None)), "schema_version": (int,),
}
_ADDED_IN = {"predictions": 2, "curves": 2}


# What a record says about its predictions file: enough to find it and to tell whether it belongs.
PREDICTIONS_FIELDS: dict[str, type] = {"file": str, "sha256": str, "val_list_sha256": str, "videos": int, "top_k": int}
_OPTIONAL = {f.name for f in dataclasses.fields(RunRecord) if f.default is not dataclasses.MISSING
             or f.default_factory is not dataclasses.MISSING}


def parse_record(data: Any, path: Path | str) -> RunRecord:
    """Validate a decoded JSON object against the schema and build a RunRecord."""
    if not isinstance(data, dict):
        raise RecordError(path, "<root>", f"expected a JSON object, got {type(data).__name__}")
    version = data.get("schema_version", SCHEMA_VERSION)
    if version not in READABLE_VERSIONS:
        raise RecordError(path, "schema_version", f"is {version!r}, this code reads versions {READABLE_VERSIONS}")
    unknown = sorted(set(data) - set(_FIELD_TYPES))
    if unknown:
        raise RecordError(path, unknown[0], "is not part of the record schema")
    newer = sorted(name for name in data if _ADDED_IN.get(name, 0) > version)
    if newer:
        raise RecordError(path, newer[0], f"is not part of schema version {version} (added in {_ADDED_IN[newer[0]]})")
    for name, types in _FIELD_TYPES.items():
        if name not in data:
            if name in _OPTIONAL:
                continue
            raise RecordError(path, name, "is missing")
        value = data[name]
        # bool is an int subclass; only git_dirty may be a bool.
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            expected = " or ".join(t.__name__ for t in types)
            raise RecordError(path, name, f"expected {expected}, got {type(value).__name__} {value!r}")
    for name in ("top1", "top5"):
        if not 0.0 <= data[name] <= 100.0:
            raise RecordError(path, name, f"accuracy {data[name]} is outside [0, 100]")
    for name in ("params_trainable", "params_total", "views", "broken_videos"):
        if data[name] < 0:
            raise RecordError(path, name, f"must be >= 0, got {data[name]}")
    if data.get("predictions") is not None:
        _check_predictions_field(data["predictions"], path)
    if data.get("curves") is not None:
        problem = curves_problem(data["curves"])
        if problem:
            raise RecordError(path, "curves", problem)
    return RunRecord(**data)


def _check_predictions_field(value: dict, path: Path | str) -> None:
    if sorted(value) != sorted(PREDICTIONS_FIELDS):
        raise RecordError(path, "predictions", f"has keys {sorted(value)}, expected {sorted(PREDICTIONS_FIELDS)}")
    for key, kind in PREDICTIONS_FIELDS.items():
        if not isinstance(value[key], kind) or isinstance(value[key], bool):
            raise RecordError(path, f"predictions.{key}", f"expected {kind.__name__}, got {value[key]!r}")
    if "/" in value["file"] or "\\" in value["file"]:
        raise RecordError(path, "predictions.file", f"must be a file name beside the record, got {value['file']!r}")


def load_record(path: Path | str) -> RunRecord:
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise RecordError(path, "<json>", f"not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})") from e
    return parse_record(data, path)


def runs_dir(results_dir: Path | str) -> Path:
    return Path(results_dir) / RUNS_SUBDIR


def iter_record_paths(results_dir: Path | str) -> Iterator[Path]:
    yield from sorted(runs_dir(results_dir).glob(f"*{RECORD_SUFFIX}"))


def is_trial(record: RunRecord) -> bool:
    """A tuning trial: scored on a held-out part of the training list, not on the validation set."""
    return record.config.get("trial") is not None


def tuning_dir(results_dir: Path | str) -> Path:
    return Path(results_dir) / TUNING_SUBDIR


def load_records(results_dir: Path | str, trials: bool = False) -> list[RunRecord]:
    """All records under ``results_dir/runs``, sorted by file name (stable order for byte-stable tables).

    A folder holds runs or tuning trials, never both (``trials`` says which is expected): a trial's
    top-1 is a held-out score of the training list, so a trial among the runs would enter tables and
    the gate as a validation result. Records of an older engine still load; they are named once,
    because their config hash follows an older run identity, so no new run will ever match (and skip)
    them.
    """
    records = [load_record(p) for p in iter_record_paths(results_dir)]
    for record in records:
        if is_trial(record) != trials:
            raise RecordError(runs_dir(results_dir) / record.file_name, "config.trial",
                              "is a tuning trial (scored on a held-out part of the training list), found among "
                              f"the runs; trials belong in RESULTS/{TUNING_SUBDIR}/{RUNS_SUBDIR}" if not trials else
                              "is not set: an ordinary run found among the tuning trials; runs belong in "
                              f"RESULTS/{RUNS_SUBDIR}")
    old = [r.file_name for r in records if predates_identity(r)]
    if old:
        log.warning("%d record(s) in %s predate the current run identity (engine version %d: weights by "
                    "content, effective precision, method versions, data identity), e.g. %s; they are "
                    "reported but no new run matches them", len(old), runs_dir(results_dir), ENGINE_VERSION, old[0])
    return records


def predates_identity(record: RunRecord) -> bool:
    return record.config.get("engine_version", 0) < ENGINE_VERSION


def find_record(results_dir: Path | str, config_hash: str) -> Path | None:
    """The record of a finished config, used to skip it unless ``--force``."""
    matches = sorted(runs_dir(results_dir).glob(f"*__{config_hash}{RECORD_SUFFIX}"))
    return matches[0] if matches else None


def write_record(results_dir: Path | str, record: RunRecord) -> Path:
    """Write atomically and durably (bench.atomic).

    Concurrent jobs each write their own file name, and rename is atomic on POSIX, so readers never
    see a half-written record and no writer can clobber another's.
    """
    parse_record(json.loads(record.to_json()), record.file_name)  # never write what we could not read back
    return atomic_write(runs_dir(results_dir) / record.file_name, record.to_json(), durable=True)
