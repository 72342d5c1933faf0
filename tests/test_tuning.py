"""Fair tuning (bench.run --tune): the grid, the held-out split, the same trials for every method, the
selection rule, the selection's blindness to the validation set, diverged trials, the protocol end
to end on tiny real runs, and trial records kept out of the tables and the gate.

Accuracies of planted records are test inputs chosen for the case under test, not measurements.
"""
from __future__ import annotations

import argparse
import builtins
import collections
import csv
import dataclasses
import io
import math
import shutil
from pathlib import Path

import pytest
from engine_helpers import TINY_WORLD, generated_tiny_world, tiny_run

from bench import check, report
from bench.config import BenchInputError, RunConfig
from bench.data import build_dataset
from bench.data.holdout import HoldoutError, HoldoutSpec
from bench.data.listfile import DatasetIndex, VideoEntry
from bench.data.synthetic import synthetic_dir
from bench.engine.execution import Execution
from bench.engine.loop import execute_run
from bench.launch.submit import LaunchOptions
from bench.reporting.generate import generate
from bench.reporting.inputs import build_report
from bench.reporting.layout import PLOTS_SUBDIR
from bench.reporting.plots import plot_stems
from bench.reporting.summary import method_label
from bench.store.predictions import load_predictions
from bench.store.records import RecordError, RunRecord, load_records, tuning_dir, write_record
from bench.tuning import protocol
from bench.tuning.plan import TuneRequest, at_point, parse_request, plan_trials
from bench.tuning.select import PointScore, choose
from bench.tuning.spec import KnobPoint, TuningError, grid_values


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    return generated_tiny_world(tmp_path_factory.mktemp("synth-cache"))


def request(points: int = 3, seeds: tuple[int, ...] = (0,), fraction: float = 0.1, knobs: str = "lr") -> TuneRequest:
    return parse_request(knobs, points, seeds, fraction)


# -- The grid and the split ------------------------------------------------------------------------

def test_grid_points_are_log_spaced_around_the_declared_value():
    half_decade = math.sqrt(10)
    assert grid_values(0.1, half_decade, 5) == [(-2, 0.01), (-1, 0.032), (0, 0.1), (1, 0.32), (2, 1.0)]
    assert [v for _, v in grid_values(0.03, half_decade, 3)] == [0.0095, 0.03, 0.095]
    assert grid_values(0.0123, half_decade, 3)[1] == (0, 0.0123)  # the declared value itself is kept exactly
    assert [v for _, v in grid_values(32, 2.0, 5, integer=True)] == [8, 16, 32, 64, 128]
    with pytest.raises(TuningError, match="odd number"):
        grid_values(0.1, half_decade, 4)
    with pytest.raises(TuningError, match="repeated"):
        grid_values(2, 1.2, 5, integer=True)  # 1, 1, 2, 2, 3


def _index(ids: list[str], root: Path) -> DatasetIndex:
    entries = [VideoEntry(root / f"{i}.mp4", int(i[-6:]) % 7) for i in ids]  # a video keeps its label
    return DatasetIndex(entries, [str(c) for c in range(7)], root, root / "train.txt")


def test_the_heldout_split_is_fixed_by_video_id(tmp_path):
    ids = [f"videos/train/{i:06d}" for i in range(200)]
    rest, held = HoldoutSpec(0.1).split(_index(ids, tmp_path / "a"))
    assert len(held.entries) == 20 and len(rest.entries) == 180
    assert set(held.video_ids()).isdisjoint(rest.video_ids())
    assert set(held.video_ids()) | set(rest.video_ids()) == set(ids)
    assert held.video_ids() == sorted(held.video_ids())  # each part keeps the list's order
    # another order of the list, another mount point: the same videos are held out
    shuffled = ids[::-1][100:] + ids[::-1][:100]
    assert set(HoldoutSpec(0.1).split(_index(shuffled, tmp_path / "b"))[1].video_ids()) == set(held.video_ids())
    # a different rule would hold out other videos: the split is not the list's first or last tenth
    assert held.video_ids() != ids[:20] and held.video_ids() != ids[-20:]
    # stratified: each of the 7 classes (29 or 28 videos) gives its share, 3 or 2 (largest remainder)
    assert sorted(collections.Counter(e.label for e in held.entries).values()) == [2, 3, 3, 3, 3, 3, 3]
    assert len(HoldoutSpec(0.25).split(_index(ids, tmp_path))[1].entries) == 50
    for bad in (0, 0.6, float("nan")):
        with pytest.raises(HoldoutError, match="must be a number in"):
            HoldoutSpec(bad)


# -- The same trials for every method --------------------------------------------------------------

def test_every_method_gets_the_same_trials(data_root):
    runs = [tiny_run(data_root, method=m, seed=s, method_lr=True, base_lr=0.1, family="synth")
            for m in ("linear_probe", "full_ft", "st_adapter") for s in (0, 1, 2)]
    trials = plan_trials(runs, request(points=5, seeds=(0, 1)))
    assert [len(t) for t in trials.values()] == [10, 10, 10]  # 5 points x 2 trial seeds, per configuration
    by_method = {group[0].method: group for group in trials.values()}
    for method, group in by_method.items():
        declared = next(r for r in runs if r.method == method).recipe.base_lr
        lrs = sorted({t.recipe.base_lr for t in group})
        assert len(lrs) == 5 and declared in lrs and lrs[2] == declared
        assert all(t.trial.holdout == HoldoutSpec(0.1) for t in group)
        base = next(r for r in runs if r.method == method and r.seed == 0)
        for t in group:
            assert (t.tuned is None) == (t.trial.point[0].step == 0)  # off the declared value: another configuration
            assert dataclasses.replace(t, trial=None, seed=0).hash() == at_point(base, t.trial.point).hash()
        declared_trial = next(t for t in group if t.trial.point[0].step == 0 and t.seed == 0)
        assert dataclasses.replace(declared_trial, trial=None).hash() == base.hash()  # the grid's own run
        assert declared_trial.hash() != base.hash()
    assert by_method["full_ft"][0].recipe.base_lr != by_method["linear_probe"][0].recipe.base_lr  # its own 0.01
    other_split = plan_trials(runs[:1], request(seeds=(0,), fraction=0.2))
    same_split = plan_trials(runs[:1], request(seeds=(0,)))
    hashes = [{t.hash() for g in trials.values() for t in g} for trials in (other_split, same_split)]
    assert hashes[0].isdisjoint(hashes[1])  # the split is part of a trial's identity


def test_joint_knobs_search_their_grids_product(data_root):
    [group] = plan_trials([tiny_run(data_root, method="linear_probe")], request(knobs="lr,wd")).values()
    points = {(t.recipe.base_lr, t.recipe.weight_decay) for t in group}
    assert points == {(lr, wd) for lr in (0.16, 0.5, 1.6) for wd in (0.0032, 0.01, 0.032)}
    off = next(t for t in group if (t.recipe.base_lr, t.recipe.weight_decay) == (0.5, 0.032))
    assert off.tuned == {"weight_decay": 0.032}  # only what moved from the declared values


def test_a_knob_a_method_does_not_declare_is_refused(data_root):
    runs = [tiny_run(data_root, method=m) for m in ("linear_probe", "st_adapter")]
    with pytest.raises(BenchInputError, match=r"\['linear_probe'\] declare no tunable option 'width'"):
        plan_trials(runs, request(knobs="width"))
    widths = plan_trials(runs[1:], request(knobs="width"))
    assert sorted(t.method_options["width"] for t in next(iter(widths.values()))) == [8, 16, 32]
    with pytest.raises(BenchInputError, match="--tune is empty"):
        parse_request(" , ", 3, (0,), 0.1)


# -- The rule -------------------------------------------------------------------------------------

def _score(step: int, correct: int, seeds=(0, 1), videos: int = 50) -> PointScore:
    point = (KnobPoint("lr", 0.1 * 10 ** (step / 2), 0.1, step),)
    top1 = tuple(100 * correct / len(seeds) / videos for _ in seeds)
    return PointScore(point=point, label=f"m{step}", seeds=seeds, top1=top1, correct=correct, videos=videos,
                      diverged=(), files=())


def test_the_rule_takes_the_best_mean_and_ties_to_the_declared_value():
    assert choose([_score(-1, 40), _score(0, 39), _score(1, 12)]).point[0].step == -1
    assert choose([_score(-1, 40), _score(0, 40), _score(1, 40)]).point[0].step == 0  # tie: declared
    assert choose([_score(-2, 40), _score(-1, 40), _score(0, 3), _score(2, 40)]).point[0].step == -1  # nearest
    assert choose([_score(-1, 40), _score(0, 3), _score(1, 40)]).point[0].step == -1  # then the smaller value
    with pytest.raises(ValueError, match="do not share their trial seeds"):
        choose([_score(-1, 40), _score(0, 40, seeds=(0,))])


# -- Selection never reads the validation set ----------------------------------------------------

def planted_record(cfg: RunConfig, top1: float, videos: int) -> RunRecord:
    """A record of ``cfg`` as the engine writes one, with the given top-1."""
    return RunRecord(
        method=cfg.method, dataset=cfg.dataset, backbone=cfg.backbone, recipe=cfg.recipe.name, seed=cfg.seed,
        config_hash=cfg.hash(), config=cfg.to_dict(), top1=top1, top5=min(100.0, top1 + 10),
        params_trainable=650, params_total=100_000, gflops_per_view=0.01, views=cfg.recipe.clip.views,
        wall_time_s=1.0, throughput_clips_per_s=10.0, peak_memory_bytes=1, broken_videos=0, git_commit="0" * 40,
        git_dirty=False, packages={}, hardware={}, created_at="2026-01-01T00:00:00+00:00",
        per_class_top1=[top1] * 10, extra={"val_videos": videos, "train_clips": 18})


class Unreadable:
    """Every open() of a file under ``folders`` fails the test: what selection must never read."""

    def __init__(self, monkeypatch, *folders: Path):
        self.folders = [f.resolve() for f in folders]
        real = builtins.open

        def guarded(file, *args, **kwargs):
            if isinstance(file, (str, Path)) and any(Path(file).resolve().is_relative_to(f) for f in self.folders):
                raise AssertionError(f"selection opened {file}")
            return real(file, *args, **kwargs)
        monkeypatch.setattr(builtins, "open", guarded)
        monkeypatch.setattr(io, "open", guarded)


HELD_OUT = {-2: 62.0, -1: 60.0, 0: 50.0, 1: 40.0, 2: 20.0}  # what the trials scored on the held-out split
VALIDATION = {-2: 20.0, -1: 30.0, 0: 45.0, 1: 99.0, 2: 10.0}  # what the same points score on the validation set


def plant_sweep(results: Path, data_root: Path, points: int = 3, method: str = "linear_probe",
                held_out: dict[int, float] = HELD_OUT, **recipe_changes
                ) -> tuple[dict[str, list[RunConfig]], list[RunConfig]]:
    """Trials of ``method`` at ``points`` lrs in RESULTS/tuning, and validation records of the same
    configurations in RESULTS/runs, where a held-out loser (step +1) wins."""
    runs = [tiny_run(data_root, method=method, seed=s, **recipe_changes) for s in (0, 1)]
    trials = {key: [dataclasses.replace(t, data={"val_list_sha256": "held-out", "prepared": None}) for t in group]
              for key, group in plan_trials(runs, request(points=points, seeds=(0, 1))).items()}
    for t in next(iter(trials.values())):
        write_record(tuning_dir(results), planted_record(t, held_out[t.trial.point[0].step] + t.seed, videos=50))
        final = dataclasses.replace(t, trial=None)
        write_record(results, planted_record(final, VALIDATION[t.trial.point[0].step] + t.seed, videos=640))
    return trials, runs


def test_selection_reads_no_validation_number(tmp_path, data_root, monkeypatch):
    results = tmp_path / "results"
    trials, _ = plant_sweep(results, data_root)
    world = synthetic_dir("synth_motion", TINY_WORLD, data_root)
    Unreadable(monkeypatch, results / "runs", world / "val.txt", world / "videos" / "val")
    with pytest.raises(AssertionError, match="selection opened"):  # the poison works
        load_records(results)
    [sweep] = protocol.select(trials, tuning_dir(results)).values()
    assert sweep.chosen.point[0].step == -1 and sweep.chosen.mean == 60.5  # the held-out winner
    assert sweep.declared.point[0].step == 0 and sweep.steps_apart == 1 and sweep.at_edge == ["lr"]


# -- Diverged trials ------------------------------------------------------------------------------

def test_a_diverged_trial_is_recorded_and_an_ordinary_run_fails(tmp_path, data_root):
    cfg = tiny_run(data_root, method="linear_probe", base_lr=1e38)  # AdamW's step overflows float32
    with pytest.raises(FloatingPointError, match="lower the learning rate"):
        execute_run(cfg, tmp_path / "ordinary", Execution(progress=False))
    [trial] = next(iter(plan_trials([cfg], request(points=3, seeds=(0,))).values()))[1:2]
    record = execute_run(trial, tmp_path / "trials", Execution(progress=False))
    assert record.top1 == 0.0 and "non-finite" not in record.extra["diverged"] and "loss is" in record.extra["diverged"]
    assert record.predictions is None and record.extra["val_videos"] == 2  # the held-out part of 20 clips


# -- The protocol end to end ----------------------------------------------------------------------

@pytest.mark.slow
def test_the_protocol_runs_trials_then_selects_then_runs_the_choice(tmp_path, data_root, monkeypatch, capsys):
    """Tiny real runs: the validation list and videos are absent until the selection is made."""
    world = synthetic_dir("synth_motion", TINY_WORLD, data_root)
    hidden = tmp_path / "hidden"
    hidden.mkdir()
    shutil.move(world / "val.txt", hidden / "val.txt")
    shutil.move(world / "videos" / "val", hidden / "val")
    stages = []

    def restore() -> None:
        shutil.move(hidden / "val.txt", world / "val.txt")
        shutil.move(hidden / "val", world / "videos" / "val")

    real_final_runs = protocol.final_runs

    def final_runs_after_restoring(*args, **kwargs):
        stages.append("selected")
        restore()
        return real_final_runs(*args, **kwargs)
    monkeypatch.setattr(protocol, "final_runs", final_runs_after_restoring)
    results = tmp_path / "results"
    runs = [tiny_run(data_root, method=m, seed=0) for m in ("linear_probe", "st_adapter")]
    args = argparse.Namespace(dry_run=False, tuning_from=None, results=results, no_summary=True)
    launch = LaunchOptions(executor="debug")
    try:
        assert protocol.tune(args, runs, request(), Execution(progress=False), launch) == 0
    finally:
        if not stages:
            restore()
    assert stages == ["selected"]

    trials = load_records(tuning_dir(results), trials=True)
    assert len(trials) == 6 and all(t.extra["val_videos"] == 2 and t.extra["train_clips"] == 18 for t in trials)
    train_ids = set(build_dataset("synth_motion", "train", runs[0].recipe.clip, True, root=data_root,
                                  synth=TINY_WORLD).video_ids)
    for t in trials:  # scored on videos of the training list
        assert set(load_predictions(tuning_dir(results), t).video_ids.tolist()) < train_ids
    finals = load_records(results)
    chosen = {s.chosen.label for s in build_report(results).sweeps}
    labels = {method_label(r, r.file_name) for r in finals}  # every choice, and every declared configuration
    assert chosen <= labels and {"linear_probe", "st_adapter[width=16]"} <= labels and len(finals) == len(labels)
    assert all(r.extra["val_videos"] == 10 and r.extra["train_clips"] == 20 for r in finals)

    capsys.readouterr()
    monkeypatch.setattr(protocol, "final_runs", real_final_runs)
    assert protocol.tune(args, runs, request(), Execution(progress=False), launch) == 0
    out = capsys.readouterr().out
    assert "6 of 6 tuning trials already have records" in out
    assert f"{len(finals)} of {len(finals)} runs (chosen and declared values) already have records" in out

    # CI's way: the committed trials select, nothing of the sweep runs again
    fresh = tmp_path / "fresh"
    from_committed = argparse.Namespace(dry_run=False, tuning_from=results, results=fresh, no_summary=True)
    assert protocol.tune(from_committed, runs, request(), Execution(progress=False), launch) == 0
    assert f"all 6 trials found in {tuning_dir(results)}; running none" in capsys.readouterr().out
    assert not tuning_dir(fresh).exists()
    assert sorted(r.config_hash for r in load_records(fresh)) == sorted(r.config_hash for r in finals)

    generate(results)
    text = (results / "README.md").read_text()
    assert "| tuning " in text and "Tuning (`bench.run --tune`)" in text
    built = build_report(results)
    assert len(built.sweeps) == 2
    for stem in plot_stems(built):
        assert (results / PLOTS_SUBDIR / f"{stem}.png").is_file()


def test_trials_absent_from_tuning_from_are_an_input_error(tmp_path, data_root):
    results, fresh = tmp_path / "results", tmp_path / "fresh"
    trials, runs = plant_sweep(results, data_root)
    args = argparse.Namespace(dry_run=False, tuning_from=results, results=fresh, no_summary=True)
    # the planted trials' data identity is not the one planning computes: the planned trials are absent
    with pytest.raises(BenchInputError, match="6 planned trials have no record"):
        protocol.tune(args, runs, request(seeds=(0, 1)), Execution(progress=False), LaunchOptions(executor="debug"))
    assert not (fresh / "runs").exists()


# -- Trials never enter tables or the gate ---------------------------------------------------------

def test_a_trial_among_the_runs_is_refused_by_report_and_gate(tmp_path, data_root, capsys):
    results = tmp_path / "results"
    plant_sweep(results, data_root)
    trial = load_records(tuning_dir(results), trials=True)[0]
    write_record(results, trial)
    for main in (report.main, lambda argv: check.main([*argv, "--committed", str(results)])):
        assert main(["--results", str(results)]) == 2
        err = capsys.readouterr().err
        assert trial.file_name in err and "config.trial" in err and "is a tuning trial" in err
    write_record(tuning_dir(results), planted_record(tiny_run(data_root, method="adapter"), 50.0, 10))
    with pytest.raises(RecordError, match="an ordinary run found among the tuning trials"):
        load_records(tuning_dir(results), trials=True)


@pytest.mark.parametrize("points, chosen, says", [
    (3, "0.16", ["tuned: lr 0.16 (declared lr 0.5, 1 grid step)", "**lr 0.16: 60.5**"]),
    (5, "0.05", ["tuned: lr 0.05 (declared lr 0.5, 2 grid steps: more than one)",
                 "2 grid steps from the declared lr 0.5: the declared value is not confirmed"]),
])
def test_the_table_says_tuned_or_declared(tmp_path, data_root, points, chosen, says):
    results = tmp_path / "results"
    plant_sweep(results, data_root, points)
    [sweep] = build_report(results).sweeps
    assert sweep.chosen.label == f"linear_probe(base_lr={chosen})" and sweep.declared.label == "linear_probe"
    generate(results, plots=False)
    text = (results / "README.md").read_text()
    for line in says + [f"| linear_probe(base_lr={chosen}) ", "declared: lr 0.5; tuning chose lr " + chosen,
                        "a grid point of the sweep, not chosen", "the chosen lr is at the grid's edge"]:
        assert line in text
    rows = list(csv.DictReader(next((results / "tables").glob("*__tuning.csv")).open()))
    assert len(rows) == points and [r["values"] for r in rows if r["chosen"] == "yes"] == [f"lr={chosen}"]
    assert [r["top1_mean"] for r in rows if r["declared"] == "yes"] == ["50.5000"]


def test_the_tuned_reference_method_is_the_reference_of_the_paired_tests(tmp_path, data_root):
    results = tmp_path / "results"
    plant_sweep(results, data_root, method="st_adapter")
    built = build_report(results)  # the default reference, st_adapter: two configurations of it here
    [sweep] = built.sweeps
    assert built.analysis[sweep.key[:3]].reference == sweep.chosen.label == "st_adapter[width=16](base_lr=0.16)"


def test_the_reference_is_each_groups_own_choice(tmp_path, data_root):
    """One group's sweep keeps the declared lr, another's chooses a tuned one: each group's paired
    tests take its own choice (a set of choices pooled over groups held both labels in the second
    group, and the reference was declared ambiguous there)."""
    results = tmp_path / "results"
    plant_sweep(results, data_root, method="st_adapter")
    plant_sweep(results, data_root, method="st_adapter", held_out={-1: 40.0, 0: 60.0, 1: 50.0},
                name="tiny_b", weight_decay=0.05)  # another recipe: another group
    built = build_report(results)
    chosen = {sweep.key[:3]: sweep.chosen.label for sweep in built.sweeps}
    assert sorted(chosen.values()) == ["st_adapter[width=16]", "st_adapter[width=16](base_lr=0.16)"]
    assert {group: built.analysis[group].reference for group in chosen} == chosen
