"""The report's cost axes: H200 step records matched to configurations (their own case at real scale,
the real recipe's case for a synthetic task), "no H200 record" where none matches, inference GFLOPs
of merging methods counted on the merged model, Pareto fronts, and the published memory kept
"reported". Perf records are written by bench.perf's own writer; their numbers are test inputs."""
from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

import pytest
from PIL import Image
from record_factory import make_record, write_suite

from bench.counting import count_model
from bench.reporting.costs import COST_AXES, NO_RECORD, pareto_front
from bench.reporting.generate import generate
from bench.reporting.inputs import build_report
from bench.reporting.layout import DEFAULT_REFERENCE, cost_plot
from bench.reporting.plots import figure_size_px
from bench.reporting.reference import load_reference
from bench.reporting.summary import ReportError
from bench.store.records import write_record
from bench.timing.cases import SETTINGS, BenchSpec, Measurement
from bench.timing.records import record as perf_json
from bench.timing.records import write_json
from tests.method_helpers import TINY, tiny_model

K400 = dict(backbone="clip_vit_b16", recipe="k400")


def write_perf(folder: Path, label: str, method: str, options: dict, step_ms: float, setting: str = "fast",
               memory_gib: float = 10.0, **spec) -> None:
    """A step record as ``python -m bench.perf`` writes it (bench.timing.records)."""
    m = Measurement(label=label, method=method, options=options, setting=setting, params_trainable=1,
                    step_ms=step_ms, step_ms_p10=step_ms, step_ms_p90=step_ms, clips_per_s=32e3 / step_ms,
                    peak_memory_bytes=int(memory_gib * 2**30), static_memory_bytes=0, eval_ms=1.0,
                    eval_clips_per_s=1.0, first_step_s=1.0)
    bench_spec = BenchSpec(**spec)
    write_json(folder / f"{bench_spec.backbone}__{setting}__{label}.json",
               perf_json(m, SETTINGS[setting], bench_spec, {"hardware": {"gpu": "NVIDIA H200"}}))


@pytest.fixture()
def perf(tmp_path: Path) -> Path:
    folder = tmp_path / "perf"
    write_perf(folder, "st_adapter_12x384", "st_adapter", {"preset": "12x384"}, 56.5, memory_gib=11.25)
    write_perf(folder, "st_adapter_24x384", "st_adapter", {"preset": "24x384"}, 66.5, memory_gib=13.5)
    write_perf(folder, "st_adapter_12x384", "st_adapter", {"preset": "12x384"}, 111.5, setting="plain")  # not fast
    write_perf(folder, "partial_ft", "partial_ft", {"num_blocks": 1}, 26.5)
    write_perf(folder, "linear_probe", "linear_probe", {}, 22.0)
    write_perf(folder, "linear_probe", "linear_probe", {}, 33.0, backbone="vit_l14")  # another backbone
    write_json(folder / "clip_vit_b16__micro.json", {"kind": "perf_micro", "rows": []})  # not a step record
    return folder


def first_table(section: str) -> dict[str, list[str]]:
    """The rows of the section's first Markdown table, by first cell."""
    lines = section.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip().strip("|").split("|")])
    return {cells[0]: cells for cells in rows}


@pytest.fixture()
def no_perf(tmp_path: Path) -> Path:
    folder = tmp_path / "no-perf"
    folder.mkdir()
    return folder


def _costs(results: Path, perf: Path) -> dict:
    report = build_report(results, perf=perf)
    return {(s.dataset, s.method): report.cost(s) for s in report.summaries}


def test_a_run_at_the_benchmarked_scale_takes_the_record_of_its_own_method_and_options(tmp_path, perf):
    results = tmp_path / "results"
    for method, options in (("st_adapter", {"preset": "12x384"}), ("partial_ft", {}), ("linear_probe", {}),
                            ("st_adapter", {"width": 384, "positions": ["pre_attn", "pre_mlp"]}),  # 24x384 spelt out
                            ("st_adapter", {"preset": "12x384", "width": 192})):  # not benchmarked
        write_record(results, make_record(method, "k400", 0, 80.0, method_options=options, **K400))
    frames16 = make_record("st_adapter", "k400", 1, 80.0, method_options={"preset": "24x384"}, **K400)
    recipe = {**frames16.config["recipe"], "name": "k400(num_frames=16)"}
    recipe["clip"] = {**recipe["clip"], "num_frames": 16}
    write_record(results, dataclasses.replace(frames16, recipe=recipe["name"], config={**frames16.config,
                                                                                       "recipe": recipe}))
    costs = _costs(results, perf)

    def record_of(method: str) -> str | None:
        found = costs[("k400", method)].perf
        return None if found is None else found.file

    assert record_of("st_adapter[preset=12x384]") == "clip_vit_b16__fast__st_adapter_12x384.json"
    assert costs[("k400", "st_adapter[preset=12x384]")].step_ms == 56.5  # the fast record, not the plain one
    assert costs[("k400", "st_adapter[preset=12x384]")].train_memory_gib == 11.25
    assert record_of("partial_ft") == "clip_vit_b16__fast__partial_ft.json"  # {} is num_blocks=1
    assert record_of("linear_probe") == "clip_vit_b16__fast__linear_probe.json"  # not the ViT-L/14 one
    spelt_out = "st_adapter[positions=['pre_attn', 'pre_mlp'],width=384]"
    assert record_of(spelt_out) == "clip_vit_b16__fast__st_adapter_24x384.json"
    assert record_of("st_adapter[preset=12x384,width=192]") is None
    assert costs[("k400", "st_adapter[preset=24x384]")].case.num_frames == 16
    assert record_of("st_adapter[preset=24x384]") is None  # 16 frames were not benchmarked


def test_a_synthetic_task_takes_the_record_of_the_real_recipe_it_stands_for(tmp_path, perf):
    results = tmp_path / "results"
    declared = {"width": 32, "positions": "pre_attn,pre_mlp"}  # st_adapter's synthetic options
    for dataset in ("synth_appearance", "synth_motion"):
        for seed in (0, 1):
            write_record(results, make_record("st_adapter", dataset, seed, 70.0 + seed, method_options=declared))
            write_record(results, make_record("linear_probe", dataset, seed, 30.0 + seed))
            write_record(results, make_record("st_adapter", dataset, seed, 75.0 + seed, added=80_000,
                                              method_options={**declared, "width": 64}))  # a tuned width
            write_record(results, make_record("full_ft", dataset, seed, 40.0 + seed))  # no full_ft record
    costs = _costs(results, perf)
    label = "st_adapter[positions=pre_attn,pre_mlp,width=32]"
    assert costs[("synth_appearance", label)].perf.label == "st_adapter_12x384"  # K400's model
    assert costs[("synth_motion", label)].perf.label == "st_adapter_24x384"  # SSv2's
    assert costs[("synth_motion", label)].case.stands_in_for == "ssv2"
    assert costs[("synth_motion", "linear_probe")].perf.label == "linear_probe"
    assert costs[("synth_motion", "st_adapter[positions=pre_attn,pre_mlp,width=64]")].case is None
    assert costs[("synth_motion", "full_ft")].case is not None and costs[("synth_motion", "full_ft")].perf is None

    paths = generate(results, perf=perf)
    readme = (results / "README.md").read_text()
    motion = readme.split("## synth_motion", 1)[1].split("\n## ", 1)[0]
    rows = first_table(motion)
    assert rows[label][-2:] == ["66.5", "13.50"]
    assert rows["full_ft"][-2:] == [NO_RECORD, NO_RECORD]
    assert rows["st_adapter[positions=pre_attn,pre_mlp,width=64]"][-2:] == [NO_RECORD, NO_RECORD]
    assert "synth_motion stands in for SSv2" in motion
    assert (f"{NO_RECORD} (left out of the H200 fronts and plots): st_adapter[positions=pre_attn,pre_mlp,width=64], "
            "full_ft") in motion
    with (results / "tables" / "synth_motion__synth_vit__synth.csv").open() as f:
        table = {row["method"]: row for row in csv.DictReader(f)}
    assert table["full_ft"]["h200_record"] == NO_RECORD and table["full_ft"]["h200_step_ms"] == ""
    assert table[label]["h200_record"] == "clip_vit_b16__fast__st_adapter_24x384.json"
    assert table[label]["h200_stands_in_for"] == "ssv2"
    # every cost figure is drawn, full_ft left out of the H200 panels without failing them
    for stem in (cost_plot(axis.name) for axis in COST_AXES):  # tests/test_report.py pins their names
        assert results / "plots" / f"{stem}.png" in paths
        with Image.open(results / "plots" / f"{stem}.png") as image:
            assert image.size == figure_size_px(2) and len(image.getcolors(maxcolors=1 << 20)) > 20


def test_without_perf_records_every_h200_cell_says_so(tmp_path, no_perf):
    results = tmp_path / "results"
    write_suite(results, seeds=(0,))
    generate(results, plots=False, perf=no_perf)
    readme = (results / "README.md").read_text()
    for dataset in ("synth_appearance", "synth_motion"):
        rows = first_table(readme.split(f"## {dataset}", 1)[1])
        assert len(rows) == 3 and all(cells[-2:] == [NO_RECORD, NO_RECORD] for cells in rows.values())
    assert f'every H200 column says "{NO_RECORD}"' in readme
    with pytest.raises(ReportError, match=r"nowhere: no such folder of bench.perf records; pass --perf DIR"):
        build_report(results, perf=tmp_path / "nowhere")


def test_two_records_of_one_case_are_an_error(tmp_path, perf):
    write_perf(perf, "st_adapter_k400", "st_adapter", {"width": 384, "positions": "pre_mlp"}, 57.0)  # = 12x384
    results = tmp_path / "results"
    write_record(results, make_record("linear_probe", "synth_motion", 0, 30.0))
    with pytest.raises(ReportError, match=r"st_adapter_12x384.json and .*st_adapter_k400.json measured the same case"):
        build_report(results, perf=perf)


@pytest.mark.parametrize("method", ["lora", "zeroi2v"])
def test_a_merging_method_costs_its_merged_model_at_inference(tmp_path, monkeypatch, no_perf, method):
    """The deployed model is counted: the image model's FLOPs (within 0.5%), below the trained form's
    that the run recorded; a method that does not merge keeps its recorded count."""
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path / "cache"))
    classes, frames, size = 5, 4, 32  # the synth recipe's clip
    def gflops(name: str) -> float:
        return count_model(tiny_model(name, num_frames=frames, num_classes=classes), frames, size).gflops_per_view

    trained, plain = gflops(method), gflops("linear_probe")
    results = tmp_path / "results"
    for name, gflops in ((method, trained), ("st_adapter", 0.0123)):
        write_record(results, make_record(name, "synth_motion", 0, 50.0, backbone=TINY, gflops=gflops, classes=classes))
    costs = _costs(results, no_perf)
    merged = costs[("synth_motion", method)]
    assert merged.merged and merged.inference_gflops_per_view == pytest.approx(plain, rel=0.005)
    assert trained > 1.02 * merged.inference_gflops_per_view  # beyond the 0.5% the merged count may differ by
    assert merged.inference_gflops == merged.inference_gflops_per_view * 2  # the factory's 2 views
    assert not costs[("synth_motion", "st_adapter")].merged
    assert costs[("synth_motion", "st_adapter")].inference_gflops_per_view == 0.0123
    generate(results, plots=False, perf=no_perf)
    row = next(line for line in (results / "README.md").read_text().splitlines() if line.startswith(f"| {method} "))
    assert f"× 2 (merged) |" in row
    assert list((tmp_path / "cache" / "counts").glob("*.json"))  # counted once, then read back


def test_a_merging_record_without_its_class_count_is_an_error(tmp_path, no_perf):
    results = tmp_path / "results"
    write_record(results, make_record("lora", "synth_motion", 0, 50.0, backbone=TINY))
    with pytest.raises(ValueError, match="per_class_top1.*class count"):
        build_report(results, perf=no_perf)


def test_the_pareto_front_of_a_hand_made_example():
    points = [("a", 1.0, 50.0), ("b", 2.0, 60.0), ("c", 2.0, 55.0), ("d", 3.0, 60.0), ("e", 0.5, 40.0),
              ("f", 4.0, 70.0), ("g", 4.0, 70.0), ("h", 5.0, 65.0)]
    # c: as costly as b, less accurate; d: costlier than b, no better; h: costlier and worse than f
    assert pareto_front(points) == ["e", "a", "b", "f", "g"]
    assert pareto_front([]) == [] and pareto_front([("x", 1.0, 1.0)]) == ["x"]


def test_the_pareto_fronts_are_stated_under_each_table_and_in_the_csv(tmp_path, no_perf):
    results = tmp_path / "results"
    write_suite(results)  # params: linear_probe < st_adapter < full_ft; motion top-1 20 < 80 > 60
    generate(results, plots=False, perf=no_perf)
    readme = (results / "README.md").read_text()
    motion = readme.split("## synth_motion", 1)[1].split("\n## ", 1)[0]
    appearance = readme.split("## synth_appearance", 1)[1].split("\n## ", 1)[0]
    assert "trainable params: linear_probe · st_adapter;" in motion  # full_ft costs more for less
    assert "trainable params: linear_probe · st_adapter · full_ft;" in appearance  # 90 < 93 < 95
    assert "H200 step: none measured" in motion
    with (results / "tables" / "synth_motion__synth_vit__synth.csv").open() as f:
        fronts = {row["method"]: row["pareto_front"] for row in csv.DictReader(f)}
    # equal inference GFLOPs (the factory's 0.25 for all): only the most accurate is on that front
    assert fronts == {"linear_probe": "params", "st_adapter": "params inference_gflops", "full_ft": ""}


def test_published_memory_is_reported_beside_the_h200_records_and_never_measured(tmp_path, perf):
    rows = load_reference(DEFAULT_REFERENCE)
    memory = [r for r in rows if r.train_memory_gb is not None]
    assert {(r.method, r.train_memory_gb) for r in memory} == {
        ("st_adapter", 28.8), ("aim", 35.2), ("evl", 17.9), ("DiST", 12.7), ("Side4Video-light", 8.9)}
    assert all(r.top1 is None and r.reference == "arXiv:2311.15769" and r.dataset == "ssv2" for r in memory)
    zeroi2v = {r.dataset: r for r in rows if r.method == "zeroi2v"}
    assert (zeroi2v["k400"].top1, zeroi2v["ssv2"].top1) == (83.0, 67.7)
    assert zeroi2v["k400"].gflops_per_view * zeroi2v["k400"].views == pytest.approx(422, abs=0.05)
    results = tmp_path / "results"
    write_suite(results, seeds=(0,))
    generate(results, plots=False, perf=perf)
    section = (results / "README.md").read_text().split("## Training cost at real scale", 1)[1].split("\n## ", 1)[0]
    measured, published = section.split("Reported training memory", 1)
    assert "(reported)" not in measured and "st_adapter_12x384" in measured and "56.5" in measured
    assert published.count("(reported)") == 5 and "Side4Video-light (reported)" in published
    for table in (results / "tables").glob("synth_*.csv"):
        assert "reported" not in table.read_text() and "28.8" not in table.read_text()


def test_a_published_row_without_any_number_is_refused(tmp_path):
    bad = tmp_path / "published.csv"
    header = DEFAULT_REFERENCE.read_text().splitlines()[0]
    bad.write_text(header + "\nevl,ssv2,ViT-B/16,8,,,,,,,paper,arXiv:2208.03550,nothing\n")
    with pytest.raises(ReportError, match=r"published.csv:2: the row publishes no number"):
        load_reference(bad)
