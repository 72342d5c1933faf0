"""bench.report: summaries, byte-stable tables, reported rows kept apart, plots, clear input errors."""
from __future__ import annotations

import csv
import dataclasses
import itertools
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from record_factory import attach_predictions, make_curves, make_predictions, make_record, write_suite

from bench import report
from bench.reporting import stats
from bench.reporting.generate import generate
from bench.reporting.inputs import build_report
from bench.reporting.layout import DEFAULT_REFERENCE
from bench.reporting.plots import figure_size_px, write_plots
from bench.reporting.reference import load_reference
from bench.reporting.summary import ReportError, summarize
from bench.store.predictions import load_predictions
from bench.store.records import RecordError, load_records, write_record

REPO_ROOT = Path(__file__).resolve().parents[1]
COST_PLOTS = ["accuracy_vs_params", "accuracy_vs_inference_gflops", "accuracy_vs_step_time", "accuracy_vs_train_memory"]


@pytest.fixture()
def suite(tmp_path: Path) -> Path:
    results = tmp_path / "results"
    write_suite(results)
    return results


def _read_all(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_malformed_record_is_an_error_naming_file_and_field(suite: Path, capsys):
    victim = sorted((suite / "runs").glob("*.json"))[2]
    data = json.loads(victim.read_text())
    del data["params_total"]
    victim.write_text(json.dumps(data))
    with pytest.raises(RecordError) as excinfo:
        generate(suite, plots=False)
    assert excinfo.value.path == victim and excinfo.value.field == "params_total"

    assert report.main(["--results", str(suite), "--no-plots"]) == 2
    err = capsys.readouterr().err
    assert victim.name in err and "params_total" in err
    assert not (suite / "README.md").exists(), "nothing may be written from malformed records"


def test_method_options_of_the_wrong_type_name_the_field(tmp_path: Path):
    record = make_record("st_adapter", "synth_motion", 0, 50.0)
    write_record(tmp_path, dataclasses.replace(record, config={"method_options": "24x384"}))
    with pytest.raises(RecordError) as excinfo:
        summarize(load_records(tmp_path), tmp_path)
    assert excinfo.value.field == "config.method_options" and record.file_name in str(excinfo.value)


def test_summary_statistics_come_from_the_seeds(suite: Path):
    records = load_records(suite)
    summaries = summarize(records, suite)
    assert len(summaries) == 6  # 3 methods x 2 datasets
    for s in summaries:
        mine = [r for r in records if (r.method, r.dataset) == (s.method, s.dataset)]
        top1 = np.array([r.top1 for r in mine])
        assert s.n == len(mine) == 3
        assert s.top1_mean == pytest.approx(top1.mean(), abs=1e-12)
        assert s.top1_std == pytest.approx(top1.std(ddof=1), abs=1e-12)
        frozen = max(r.params_total - r.params_trainable for r in records)
        assert s.params_percent == pytest.approx(100 * mine[0].params_trainable / frozen)
    # within a group, rows go from fewest to most trainable parameters
    motion = [s for s in summaries if s.dataset == "synth_motion"]
    assert [s.params_trainable for s in motion] == sorted(s.params_trainable for s in motion)


def test_csv_holds_the_summary_numbers(suite: Path):
    generate(suite, plots=False)
    records = load_records(suite)
    with (suite / "tables" / "synth_motion__synth_vit__synth.csv").open() as f:
        rows = {row["method"]: row for row in csv.DictReader(f)}
    assert sorted(rows) == ["full_ft", "linear_probe", "st_adapter"]
    top1 = np.array([r.top1 for r in records if (r.method, r.dataset) == ("st_adapter", "synth_motion")])
    assert float(rows["st_adapter"]["top1_mean"]) == pytest.approx(top1.mean(), abs=1e-4)
    assert float(rows["st_adapter"]["top1_std"]) == pytest.approx(top1.std(ddof=1), abs=1e-4)
    assert rows["st_adapter"]["throughput_clips_per_s"] == ""  # not measured (0 in the records)


def test_tables_are_byte_stable(suite: Path, tmp_path: Path):
    first = generate(suite, tmp_path / "a", plots=False)
    generate(suite, tmp_path / "b", plots=False)
    a, b = _read_all(tmp_path / "a"), _read_all(tmp_path / "b")
    assert a == b and len(first) == len(a) >= 6
    # the order in which runs were written does not matter either
    shuffled = tmp_path / "shuffled"
    for record in reversed(load_records(suite)):
        write_record(shuffled, record)
    generate(shuffled, tmp_path / "c", plots=False)
    assert _read_all(tmp_path / "c") == a


def test_reported_rows_sit_beside_their_dataset_only(suite: Path):
    write_record(suite, make_record("st_adapter", "k400", 0, 80.0, backbone="clip_vit_b16",
                                    recipe="k400", throughput=210.5, peak_memory=3 * 2**30))
    generate(suite, plots=False)
    readme = (suite / "README.md").read_text()
    k400, synth = readme.split("## synth_appearance", 1)
    reported = load_reference(DEFAULT_REFERENCE)
    for row in reported:
        if row.dataset == "k400":
            assert f"{row.method} (reported)" in k400 and row.reference in k400
    synth_tables = synth.split("## Training cost at real scale", 1)[0]
    assert "(reported)" not in synth_tables
    # the reported section lists every published row, K400 and SSv2 alike
    section = readme.split("## Reported numbers", 1)[1]
    assert section.count("(reported)") == len(reported)
    assert {r.dataset for r in reported} == {"k400", "ssv2"}
    # measured throughput and memory appear; reported rows never reach the reproduced CSV
    assert "210.5" in k400 and "3.00" in k400
    assert "reported" not in (suite / "tables" / "k400__clip_vit_b16__k400.csv").read_text()
    assert "aim (reported)" in (suite / "tables" / "k400__clip_vit_b16__k400.tex").read_text()


def test_options_make_their_own_row_and_a_repeated_seed_is_an_error(suite: Path):
    write_record(suite, make_record("st_adapter", "synth_motion", 0, 85.0, added=80_000,
                                    method_options={"preset": "24x384"}))
    methods = [s.method for s in summarize(load_records(suite), suite) if s.dataset == "synth_motion"]
    assert "st_adapter[preset=24x384]" in methods and "st_adapter" in methods

    duplicate = dataclasses.replace(make_record("linear_probe", "synth_motion", 0, 33.0),
                                    config_hash="feedfacecafe")
    write_record(suite, duplicate)
    with pytest.raises(ReportError, match="both seed 0") as excinfo:
        summarize(load_records(suite), suite)
    assert duplicate.file_name in str(excinfo.value)


def test_seeds_that_disagree_on_parameters_are_an_error(suite: Path):
    stale = make_record("st_adapter", "synth_motion", 1, 80.0, added=39_000)
    write_record(suite, stale)
    with pytest.raises(ReportError, match="params_trainable") as excinfo:
        summarize(load_records(suite), suite)
    assert stale.file_name in str(excinfo.value)


def test_bad_reference_file_names_line_and_column(tmp_path: Path):
    bad = tmp_path / "published.csv"
    text = DEFAULT_REFERENCE.read_text().splitlines()
    text[3] = text[3].replace("66.9", "sixty-six")
    bad.write_text("\n".join(text) + "\n")
    with pytest.raises(ReportError, match=r"published.csv:4: column 'top1'"):
        load_reference(bad)


def test_published_numbers_carry_a_source(tmp_path: Path):
    rows = load_reference(DEFAULT_REFERENCE)
    assert rows
    for r in rows:
        assert r.source in ("paper", "code")
        assert r.reference.startswith("arXiv:" if r.source == "paper" else "github.com/")


def test_plots_are_written_with_the_expected_size(suite: Path, tmp_path: Path):
    write_record(suite, make_record("st_adapter", "k400", 0, 80.0, backbone="clip_vit_b16", recipe="k400"))
    report = build_report(suite)
    summaries = report.summaries
    paths = write_plots(report, tmp_path / "a")
    assert sorted(p.name for p in paths) == sorted(f"{stem}.{ext}" for ext in ("pdf", "png") for stem in COST_PLOTS
                                                   + ["datasets_by_method"])
    n_groups = len({s.group for s in summaries})
    n_backbones = len({s.backbone for s in summaries})
    expected = {**{stem: figure_size_px(n_groups) for stem in COST_PLOTS},
                "datasets_by_method": figure_size_px(n_backbones)}
    for path in paths:
        assert path.stat().st_size > 5_000
        if path.suffix == ".png":
            with Image.open(path) as image:
                assert image.size == expected[path.stem]
                assert len(image.getcolors(maxcolors=1 << 20)) > 20  # something is drawn
        else:
            assert path.read_bytes().startswith(b"%PDF")
    # no timestamps or version stamps: the same records draw the same bytes
    write_plots(report, tmp_path / "b")
    assert _read_all(tmp_path / "a") == _read_all(tmp_path / "b")


def test_figures_lie_where_the_readme_links_them_even_with_a_dot_in_the_recipe(tmp_path: Path):
    results = tmp_path / "results"
    for seed in (0, 1):
        record = make_record("linear_probe", "synth_motion", seed, 50.0 + seed, recipe="synth(base_lr=0.003)")
        write_record(results, dataclasses.replace(record, curves=make_curves(record.top1, seed)))
    generate(results)
    links = re.findall(r"\]\((plots/[^)]+\.png)\)", (results / "README.md").read_text())
    assert any("curves__" in link for link in links)
    assert [link for link in links if not (results / link).is_file()] == []


def test_no_records_gives_the_reported_section_and_no_plots(tmp_path: Path):
    paths = generate(tmp_path)
    readme = (tmp_path / "README.md").read_text()
    assert "No run records yet" in readme and "## Reported numbers" in readme
    assert not (tmp_path / "plots").exists()
    assert {p.name for p in paths} == {"README.md", "reported.csv", "reported.tex", "h200_training_cost.csv"}


def test_command_line_entry_point(suite: Path):
    done = subprocess.run([sys.executable, "-m", "bench.report", "--results", str(suite), "--no-plots"],
                          capture_output=True, text=True, cwd=REPO_ROOT)
    assert done.returncode == 0, done.stderr
    assert "README.md" in done.stdout and (suite / "README.md").is_file()


# -- per-video outputs: intervals, paired differences, curves ------------------------------------

VIDEOS = 400  # every factory top-1 is a multiple of 0.25 points, so exactly representable on 400 videos


@pytest.fixture(scope="module")
def outputs_template(tmp_path_factory) -> Path:
    results = tmp_path_factory.mktemp("outputs")
    write_suite(results, videos=VIDEOS)
    return results


@pytest.fixture()
def outputs(outputs_template: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "outputs"
    shutil.copytree(outputs_template, folder)
    return folder


def _markdown_rows(readme: str, section: str, after: str | None = None) -> dict[str, list[str]]:
    """The rows of the first table in the README section `section` (after the text `after`), by first cell."""
    text = readme.split(f"## {section}", 1)[1].split("\n## ", 1)[0]
    lines = (text if after is None else text.split(after, 1)[1]).splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    rows = list(itertools.takewhile(lambda line: line.startswith("|"), lines[start:]))[2:]
    return {cells[0]: cells for cells in ([c.strip() for c in r.strip("|").split("|")] for r in rows)}


def test_paired_differences_are_the_stats_of_the_predictions(outputs: Path):
    generate(outputs, plots=False)
    readme = (outputs / "README.md").read_text()
    records = {r.file_name: r for r in load_records(outputs)}
    report = build_report(outputs)
    group = ("synth_motion", "synth_vit", "synth")
    by_method = {s.method: s for s in report.summaries if s.group == group}

    def correct(method):
        return np.stack([load_predictions(outputs, records[f]).top1_correct for f in by_method[method].files])

    expected = stats.paired_difference(correct("full_ft"), correct("st_adapter"))
    assert expected.difference == pytest.approx(by_method["full_ft"].top1_mean - by_method["st_adapter"].top1_mean)
    rows = _markdown_rows(readme, "synth_motion · synth_vit · recipe synth", "Paired differences against the reference st_adapter")
    assert sorted(rows) == ["full_ft", "linear_probe"]  # every method but the reference
    full_ft = rows["full_ft"]
    assert full_ft[1] == f"{expected.difference:+.2f}" and full_ft[1].startswith("-20.")
    assert full_ft[2] == f"[{expected.interval.low:+.2f}, {expected.interval.high:+.2f}]"
    assert full_ft[4] == "yes" and full_ft[5:] == ["3", str(VIDEOS)]
    # the measured table: the intervals of each row, and the seeds and videos behind them
    measured = _markdown_rows(readme, "synth_motion · synth_vit · recipe synth")
    s = by_method["st_adapter"]
    t = stats.seed_interval(s.top1)
    v = stats.video_interval(stats.resampled_hits(correct("st_adapter")), VIDEOS)
    assert measured["st_adapter"][5] == f"[{t.low:.2f}, {t.high:.2f}]"
    assert measured["st_adapter"][6] == f"[{v.low:.2f}, {v.high:.2f}]"
    assert measured["st_adapter"][8:10] == ["3", str(VIDEOS)]
    with (outputs / "tables" / "synth_motion__synth_vit__synth__paired.csv").open() as f:
        paired = {row["method"]: row for row in csv.DictReader(f)}
    assert float(paired["full_ft"]["p_value"]) == pytest.approx(expected.p_value, abs=1e-4)
    assert paired["full_ft"]["reference"] == "st_adapter" and paired["full_ft"]["distinguishable"] == "yes"


def test_tables_with_per_video_outputs_are_byte_stable(outputs: Path, tmp_path: Path):
    generate(outputs, tmp_path / "a", plots=False)
    generate(outputs, tmp_path / "b", plots=False)
    a = _read_all(tmp_path / "a")
    assert a == _read_all(tmp_path / "b") and "tables/synth_motion__synth_vit__synth__paired.csv" in a
    shuffled = tmp_path / "shuffled"
    (shuffled / "runs").mkdir(parents=True)
    for path in reversed(sorted((outputs / "runs").iterdir())):
        shutil.copy(path, shuffled / "runs" / path.name)
    generate(shuffled, tmp_path / "c", plots=False)
    assert _read_all(tmp_path / "c") == a


def test_the_reference_method_is_chosen_on_the_command_line(outputs: Path):
    assert report.main(["--results", str(outputs), "--no-plots", "--reference-method", "full_ft"]) == 0
    readme = (outputs / "README.md").read_text()
    rows = _markdown_rows(readme, "synth_motion · synth_vit · recipe synth", "Paired differences against the reference full_ft")
    assert sorted(rows) == ["linear_probe", "st_adapter"] and rows["st_adapter"][1].startswith("+20.")
    assert report.main(["--results", str(outputs), "--no-plots", "--reference-method", "nope"]) == 0
    assert "the reference method nope has no runs here" in (outputs / "README.md").read_text()


def test_old_records_are_marked_and_never_tested(outputs: Path):
    for path in (outputs / "runs").glob("*linear_probe__s*.json"):  # linear_probe as schema 1 wrote it
        data = json.loads(path.read_text())
        (outputs / "runs" / data["predictions"]["file"]).unlink()
        del data["predictions"], data["curves"]
        path.write_text(json.dumps({**data, "schema_version": 1}))
    generate(outputs, plots=False)
    readme = (outputs / "README.md").read_text()
    section = readme.split("## synth_motion · synth_vit · recipe synth", 1)[1]
    assert "no per-video outputs (records written before schema 2): linear_probe" in section
    rows = _markdown_rows(readme, "synth_motion · synth_vit · recipe synth", "Paired differences against the reference st_adapter")
    assert rows["linear_probe"][4] == "not tested: no per-video outputs" and rows["full_ft"][4] == "yes"
    measured = _markdown_rows(readme, "synth_motion · synth_vit · recipe synth")
    assert measured["linear_probe"][6] == "—" and measured["linear_probe"][5] != "—"  # the seed interval stays


def test_runs_on_different_validation_lists_are_not_paired(outputs: Path):
    for record in load_records(outputs):
        if (record.method, record.dataset) == ("full_ft", "synth_motion"):
            other = make_predictions(load_predictions(outputs, record).top1_correct,
                                     ids=[f"elsewhere/{i}" for i in range(VIDEOS)])
            attach_predictions(outputs, record, other)
    generate(outputs, plots=False)
    rows = _markdown_rows((outputs / "README.md").read_text(), "synth_motion · synth_vit · recipe synth",
                          "Paired differences against the reference st_adapter")
    assert rows["full_ft"][4].startswith("not tested: different validation lists")
    assert rows["linear_probe"][4] == "yes"


def test_seeds_of_one_configuration_on_different_lists_are_an_error(outputs: Path):
    [record] = [r for r in load_records(outputs) if (r.method, r.dataset, r.seed) == ("full_ft", "synth_motion", 1)]
    attach_predictions(outputs, record, make_predictions(np.ones(VIDEOS, dtype=bool),
                                                         ids=[f"elsewhere/{i}" for i in range(VIDEOS)]))
    with pytest.raises(ReportError, match="evaluated on different validation lists") as excinfo:
        generate(outputs, plots=False)
    assert record.file_name in str(excinfo.value)


def test_every_figure_is_drawn_from_the_outputs(outputs: Path, tmp_path: Path):
    paths = generate(outputs, tmp_path / "out")
    plots = sorted(p.name for p in paths if p.parent.name == "plots")
    assert plots == sorted(f"{stem}.{ext}" for ext in ("png", "pdf") for stem in (
        *COST_PLOTS, "datasets_by_method", "paired_differences",
        "curves__synth_appearance__synth_vit__synth", "curves__synth_motion__synth_vit__synth"))
    readme = (tmp_path / "out" / "README.md").read_text()
    for name in plots:
        if name.endswith(".png"):
            assert f"(plots/{name})" in readme
    sizes = {"accuracy_vs_params": figure_size_px(2), "paired_differences": figure_size_px(2),
             "curves__synth_motion__synth_vit__synth": figure_size_px(4, max_columns=2)}
    for stem, size in sizes.items():
        with Image.open(tmp_path / "out" / "plots" / f"{stem}.png") as image:
            assert image.size == size and len(image.getcolors(maxcolors=1 << 20)) > 20
    generate(outputs, tmp_path / "again")
    assert _read_all(tmp_path / "out" / "plots") == _read_all(tmp_path / "again" / "plots")
