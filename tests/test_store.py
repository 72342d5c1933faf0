"""The results store: schema versions, per-video outputs beside their record, and a loader that
refuses a record and a predictions file that do not belong together."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from record_factory import attach_predictions, make_predictions, make_record

from bench.store.predictions import load_predictions, video_list_sha256
from bench.store.records import SCHEMA_VERSION, RecordError, load_record, load_records, write_record


@pytest.fixture()
def paired(tmp_path: Path):
    record = attach_predictions(tmp_path, make_record("st_adapter", "synth_motion", 0, 0.0),
                                make_predictions([True, False, True, True]))
    return tmp_path, record


def test_a_record_and_its_predictions_round_trip(paired):
    results, record = paired
    assert record.schema_version == SCHEMA_VERSION == 2
    assert record.predictions["file"] == f"{record.stem}.predictions.npz" and record.top1 == 75.0
    [loaded] = load_records(results)  # the npz beside the records is not mistaken for one
    predictions = load_predictions(results, loaded)
    assert predictions.top1_correct.tolist() == [True, False, True, True]
    assert predictions.video_ids.tolist() == [f"videos/val/{i:06d}" for i in range(4)]
    assert loaded.predictions["val_list_sha256"] == video_list_sha256(predictions.video_ids, predictions.labels)


def test_the_same_predictions_give_the_same_file(tmp_path: Path):
    a = attach_predictions(tmp_path / "a", make_record("full_ft", "synth_motion", 0, 0.0), make_predictions([True] * 9))
    b = attach_predictions(tmp_path / "b", make_record("full_ft", "synth_motion", 0, 0.0), make_predictions([True] * 9))
    assert a.predictions["sha256"] == b.predictions["sha256"]  # no timestamps in the zip


def test_the_list_hash_depends_on_ids_labels_and_order_only():
    base = video_list_sha256(["a", "b"], [0, 1])
    assert base == video_list_sha256(np.array(["a", "b"]), np.array([0, 1]))
    assert len({base, video_list_sha256(["b", "a"], [1, 0]), video_list_sha256(["a", "b"], [0, 2]),
                video_list_sha256(["a"], [0])}) == 4


def test_a_predictions_file_of_another_run_is_refused_naming_both_files(paired):
    results, record = paired
    other = attach_predictions(results, make_record("st_adapter", "synth_motion", 1, 0.0),
                               make_predictions([False, False, True, True]))
    mine = results / "runs" / record.predictions["file"]
    mine.write_bytes((results / "runs" / other.predictions["file"]).read_bytes())
    with pytest.raises(RecordError) as excinfo:
        load_predictions(results, record)
    message = str(excinfo.value)
    assert record.file_name in message and mine.name in message and "do not belong together" in message
    assert excinfo.value.field == "predictions.sha256"


def test_a_record_edited_to_another_list_is_refused(paired):
    results, record = paired
    edited = dataclasses.replace(record, predictions={**record.predictions, "val_list_sha256": "0" * 64})
    with pytest.raises(RecordError, match="val_list_sha256") as excinfo:
        load_predictions(results, edited)
    assert record.predictions["file"] in str(excinfo.value)


def test_a_missing_predictions_file_says_how_to_fix_it(paired):
    results, record = paired
    (results / "runs" / record.predictions["file"]).unlink()
    with pytest.raises(RecordError, match="is missing; restore it") as excinfo:
        load_predictions(results, record)
    assert excinfo.value.path.name == record.file_name


def _as_version_1(record) -> dict:
    data = json.loads(record.to_json())
    del data["predictions"], data["curves"]
    data["schema_version"] = 1
    return data


def test_version_1_records_still_load_without_per_video_outputs(tmp_path: Path):
    path = tmp_path / "runs" / "old.json"
    path.parent.mkdir()
    path.write_text(json.dumps(_as_version_1(make_record("linear_probe", "synth_motion", 0, 40.0))))
    old = load_record(path)
    assert old.schema_version == 1 and old.predictions is None and old.curves is None
    assert load_predictions(tmp_path, old) is None


def test_version_1_cannot_carry_the_fields_of_version_2(tmp_path: Path, paired):
    _, record = paired
    data = {**_as_version_1(record), "predictions": record.predictions}
    path = tmp_path / "v1.json"
    path.write_text(json.dumps(data))
    with pytest.raises(RecordError, match="not part of schema version 1") as excinfo:
        load_record(path)
    assert excinfo.value.field == "predictions"
    path.write_text(json.dumps({**data, "schema_version": 3}))
    with pytest.raises(RecordError, match=r"this code reads versions \(1, 2\)"):
        load_record(path)


@pytest.mark.parametrize("field, value, problem", [
    ("predictions", {"file": "x.npz"}, "has keys"),
    ("predictions", {"file": "../x.npz", "sha256": "a", "val_list_sha256": "b", "videos": 1, "top_k": 5},
     "file name beside the record"),
    ("curves", {"log_every": 1}, "expected an object with keys"),
    ("curves", {"log_every": 1, "steps_per_epoch": 2, "train": {"step": [1], "loss": [1.0], "lr": [0.1],
                                                               "clips_per_s": []},
                "eval": {"step": [], "top1": [], "top5": []}}, "lists of one length"),
])
def test_malformed_outputs_fields_name_the_field(tmp_path: Path, field, value, problem):
    record = dataclasses.replace(make_record("linear_probe", "synth_motion", 0, 40.0), **{field: value})
    with pytest.raises(RecordError, match=problem) as excinfo:
        write_record(tmp_path, record)
    assert excinfo.value.field.startswith(field)


def test_records_of_an_older_run_identity_load_and_are_named(tmp_path, caplog):
    from record_factory import make_record

    from bench.store.records import load_records, predates_identity, write_record
    old = make_record("linear_probe", "synth_motion", 0, 30.0)  # its config carries no engine version
    write_record(tmp_path, old)
    with caplog.at_level("WARNING"):
        [loaded] = load_records(tmp_path)
    assert predates_identity(loaded) and loaded.top1 == 30.0
    assert "1 record(s)" in caplog.text and "predate the current run identity" in caplog.text
