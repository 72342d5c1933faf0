"""bench.check: the gate fails on planted regressions and hand-edited tables, passes on unchanged results."""
from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from record_factory import write_suite

from bench import check
from bench.gate.baselines import BASELINES_NAME, TOLERANCE_FLOOR, TOLERANCE_SIGMAS, load_baselines
from bench.reporting.generate import generate
from bench.store.records import RunRecord, load_records, write_record


@pytest.fixture(scope="module")
def committed_template(tmp_path_factory) -> Path:
    """A committed results directory as the repository would hold it: records, report, baselines."""
    folder = tmp_path_factory.mktemp("committed")
    write_suite(folder)
    generate(folder)
    assert check.main(["--results", str(folder), "--committed", str(folder), "--write-baselines"]) == 0
    return folder


@pytest.fixture()
def committed(committed_template: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "committed"
    shutil.copytree(committed_template, folder)
    return folder


def _fresh(tmp_path: Path, committed: Path, change) -> Path:
    """Fresh records: the committed ones, each passed through `change` (which may return it as is)."""
    fresh = tmp_path / "fresh"
    for record in load_records(committed):
        write_record(fresh, change(record))
    return fresh


def _gate(fresh: Path, committed: Path) -> int:
    return check.main(["--results", str(fresh), "--committed", str(committed)])


def _is(record: RunRecord, method: str, dataset: str) -> bool:
    return (record.method, record.dataset) == (method, dataset)


def test_unchanged_results_pass(committed: Path, tmp_path: Path, capsys):
    assert _gate(committed, committed) == 0
    assert _gate(_fresh(tmp_path, committed, lambda r: r), committed) == 0
    out = capsys.readouterr().out
    assert "passed (6 configuration(s)" in out and "FAIL" not in out


def test_baselines_follow_the_documented_tolerance(committed: Path):
    records = load_records(committed)
    for b in load_baselines(committed / BASELINES_NAME):
        top1 = np.array([r.top1 for r in records if _is(r, b.method, b.dataset)])
        std = top1.std(ddof=1)
        assert b.n == 3 and b.top1_mean == pytest.approx(top1.mean(), abs=1e-4)
        assert b.top1_tolerance == pytest.approx(max(TOLERANCE_SIGMAS * std, TOLERANCE_FLOOR), abs=1e-4)


def test_planted_accuracy_drop_fails(committed: Path, tmp_path: Path, capsys):
    baseline = {b.key: b for b in load_baselines(committed / BASELINES_NAME)}
    tol = baseline[("st_adapter", "synth_motion", "synth_vit", "synth")].top1_tolerance
    drop = tol + 0.5
    fresh = _fresh(tmp_path, committed, lambda r: dataclasses.replace(r, top1=r.top1 - drop)
                   if _is(r, "st_adapter", "synth_motion") else r)
    assert _gate(fresh, committed) == 1
    out = capsys.readouterr().out
    assert "top-1 regressed: st_adapter on synth_motion" in out
    assert f"{-drop:+.2f} points" in out
    assert out.count("FAIL:") == 1  # nothing else is blamed


def test_drop_within_tolerance_passes_and_a_rise_only_warns(committed: Path, tmp_path: Path, capsys):
    baselines = {b.key[:2]: b for b in load_baselines(committed / BASELINES_NAME)}

    def shift(r: RunRecord) -> RunRecord:
        tol = baselines[(r.method, r.dataset)].top1_tolerance
        if _is(r, "linear_probe", "synth_motion"):
            return dataclasses.replace(r, top1=r.top1 - 0.5 * tol)
        if _is(r, "full_ft", "synth_motion"):
            return dataclasses.replace(r, top1=r.top1 + 2 * tol)
        return r

    assert _gate(_fresh(tmp_path, committed, shift), committed) == 0
    out = capsys.readouterr().out
    assert "warning: top-1 above baseline: full_ft on synth_motion" in out


def test_changed_parameter_count_fails(committed: Path, tmp_path: Path, capsys):
    fresh = _fresh(tmp_path, committed, lambda r: dataclasses.replace(
        r, params_trainable=r.params_trainable + 1, params_total=r.params_total + 1)
        if _is(r, "st_adapter", "synth_appearance") else r)
    assert _gate(fresh, committed) == 1
    out = capsys.readouterr().out
    assert "trainable parameters changed: st_adapter on synth_appearance" in out and "(+1)" in out


@pytest.mark.parametrize("factor, passes", [(1.004, True), (1.006, False)])
def test_gflops_must_stay_within_half_a_percent(committed: Path, tmp_path: Path, factor: float, passes: bool, capsys):
    fresh = _fresh(tmp_path, committed, lambda r: dataclasses.replace(r, gflops_per_view=r.gflops_per_view * factor)
                   if _is(r, "full_ft", "synth_motion") else r)
    assert _gate(fresh, committed) == (0 if passes else 1)
    assert ("GFLOPs per view changed: full_ft on synth_motion" in capsys.readouterr().out) is not passes


def test_hand_edited_table_fails_with_a_diff(committed: Path, capsys):
    readme = committed / "README.md"
    text = readme.read_text()
    line = next(l for l in text.splitlines() if l.startswith("| st_adapter"))
    edited = line.replace(line.split("|")[5], line.split("|")[5].replace(".", "9", 1))
    assert edited != line
    readme.write_text(text.replace(line, edited))
    assert _gate(committed, committed) == 1
    out = capsys.readouterr().out
    assert f"FAIL: {readme} differs from what the records generate" in out
    assert f"-{edited}" in out and f"+{line}" in out


def test_edited_latex_stray_table_and_missing_plot_fail(committed: Path, capsys):
    tex = committed / "tables" / "synth_motion__synth_vit__synth.tex"
    tex.write_text(tex.read_text().replace("linear\\_probe", "linear\\_probing"))
    stray = committed / "tables" / "old_results.csv"
    stray.write_text("method,top1\nst_adapter,99\n")
    (committed / "plots" / "accuracy_vs_params.png").unlink()
    assert _gate(committed, committed) == 1
    out = capsys.readouterr().out
    assert f"{tex} differs" in out
    assert f"{stray} is not generated from the records" in out
    assert "accuracy_vs_params.png is missing" in out


def test_missing_baseline_warns_without_failing(committed: Path, tmp_path: Path, capsys):
    baselines_file = committed / BASELINES_NAME
    data = json.loads(baselines_file.read_text())
    data["baselines"] = [b for b in data["baselines"] if b["method"] != "st_adapter"]
    baselines_file.write_text(json.dumps(data))
    assert _gate(committed, committed) == 0
    out = capsys.readouterr().out
    assert out.count("warning: no baseline for st_adapter") == 2
    assert "passed (4 configuration(s)" in out


def test_baseline_without_fresh_records_is_noted(committed: Path, tmp_path: Path, capsys):
    fresh = tmp_path / "fresh"
    for r in load_records(committed):
        if r.dataset == "synth_motion":
            write_record(fresh, r)
    assert _gate(fresh, committed) == 0
    assert "note: 3 baseline(s) had no fresh records" in capsys.readouterr().out


def test_malformed_baselines_name_the_field(committed: Path, capsys):
    baselines_file = committed / BASELINES_NAME
    data = json.loads(baselines_file.read_text())
    data["baselines"][1]["params_trainable"] = "many"
    baselines_file.write_text(json.dumps(data))
    assert _gate(committed, committed) == 2
    err = capsys.readouterr().err
    assert str(baselines_file) in err and "baselines[1] field 'params_trainable'" in err


def test_missing_baselines_file_says_how_to_make_one(committed: Path, capsys):
    (committed / BASELINES_NAME).unlink()
    assert _gate(committed, committed) == 2
    assert "--write-baselines" in capsys.readouterr().err


def test_baselines_file_is_byte_stable(committed: Path, tmp_path: Path):
    out = tmp_path / "again.json"
    assert check.main(["--results", str(committed), "--baselines", str(out), "--write-baselines"]) == 0
    assert out.read_bytes() == (committed / BASELINES_NAME).read_bytes()
