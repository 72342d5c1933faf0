"""bench.check: both modes of the gate, its invariants and probes, planted regressions, hand-edited tables.

The gate's records here are made from tiny real configurations (vit_tiny_test on a tiny synthetic
world), so that the probes it computes from the code are real; their accuracies are test inputs, not
measurements.
"""
from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest
import torch
from engine_helpers import TINY_WORLD, tiny_run

import methods.temporal_conv
from bench import check
from bench.gate.baselines import BASELINES_NAME, K_SIGMAS, load_baselines
from bench.reporting.generate import generate
from bench.store.records import RunRecord, load_records, write_record

FINGERPRINT = {"digest": "committed-env"}
ACCURACY = {("linear_probe", "synth_motion"): 30.0, ("st_adapter", "synth_motion"): 70.0,
            ("linear_probe", "synth_appearance"): 60.0, ("st_adapter", "synth_appearance"): 64.0}


def gate_record(method: str, dataset: str, seed: int, top1: float, data_root: Path,
                tuned: dict | None = None) -> RunRecord:
    cfg = dataclasses.replace(tiny_run(data_root, method=method, seed=seed), dataset=dataset, tuned=tuned)
    classes = 10
    return RunRecord(
        method=method, dataset=dataset, backbone=cfg.backbone, recipe=cfg.recipe.name, seed=seed,
        config_hash=cfg.hash(), config=cfg.to_dict(), top1=top1, top5=min(100.0, top1 + 20),
        params_trainable=1_000 if method == "st_adapter" else 650, params_total=100_000, gflops_per_view=0.01,
        views=cfg.recipe.clip.views, wall_time_s=1.0, throughput_clips_per_s=10.0, peak_memory_bytes=1,
        broken_videos=0, git_commit="0" * 40, git_dirty=False, packages={}, hardware={},
        created_at="2026-01-01T00:00:00+00:00", per_class_top1=[top1] * classes, fingerprint=FINGERPRINT,
        extra={"train_clips": classes * TINY_WORLD.train_per_class})


@pytest.fixture(scope="module")
def committed_template(tmp_path_factory) -> Path:
    """A committed results directory as the repository holds it: records, report, baselines."""
    folder = tmp_path_factory.mktemp("committed")
    data = tmp_path_factory.mktemp("data")
    for (method, dataset), top1 in ACCURACY.items():
        for seed in (0, 1, 2):
            write_record(folder, gate_record(method, dataset, seed, top1 + 1.5 * seed - (seed % 2), data))
    generate(folder)
    assert check.main(["--results", str(folder), "--committed", str(folder), "--write-baselines"]) == 0
    return folder


@pytest.fixture()
def committed(committed_template: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "committed"
    shutil.copytree(committed_template, folder)
    return folder


def fresh_records(tmp_path: Path, committed: Path, change=lambda r: r, fingerprint: dict | None = None) -> Path:
    """Fresh records: the committed ones through ``change``, under another fingerprint if given."""
    fresh = tmp_path / "fresh"
    shutil.rmtree(fresh, ignore_errors=True)
    for record in load_records(committed):
        record = change(record)
        if fingerprint is not None:
            record = dataclasses.replace(record, fingerprint=fingerprint)
        write_record(fresh, record)
    return fresh


OTHER_ENV = {"digest": "another-env"}


def gate(fresh: Path, committed: Path) -> int:
    return check.main(["--results", str(fresh), "--committed", str(committed)])


def _is(record: RunRecord, method: str, dataset: str) -> bool:
    return (record.method, record.dataset) == (method, dataset)


def test_unchanged_results_pass_in_exact_mode(committed: Path, tmp_path: Path, capsys):
    assert gate(fresh_records(tmp_path, committed), committed) == 0
    out = capsys.readouterr().out
    assert "passed (4 configuration(s)" in out and "FAIL" not in out
    assert out.count(" exact ") == 4 and "same fingerprint, 3 seed(s) compared bit for bit" in out


def test_any_moved_number_fails_under_the_same_fingerprint(committed: Path, tmp_path: Path, capsys):
    def nudge(r: RunRecord) -> RunRecord:
        if _is(r, "linear_probe", "synth_appearance") and r.seed == 1:
            return dataclasses.replace(r, per_class_top1=[*r.per_class_top1[:-1], r.per_class_top1[-1] + 1e-9])
        return r

    assert gate(fresh_records(tmp_path, committed, nudge), committed) == 1
    out = capsys.readouterr().out
    assert "numbers moved under the same fingerprint: linear_probe on synth_appearance" in out
    assert "seed 1: per_class_top1" in out and "refresh the baselines" in out


def test_another_fingerprint_is_judged_statistically(committed: Path, tmp_path: Path, capsys):
    b = {(x.method.split("[")[0], x.dataset): x for x in load_baselines(committed / BASELINES_NAME).baselines}
    tolerance = K_SIGMAS * b[("st_adapter", "synth_motion")].sigma * (2 / 3) ** 0.5

    def shift(delta: float):
        return lambda r: dataclasses.replace(r, top1=r.top1 + delta) if _is(r, "st_adapter", "synth_motion") else r

    assert gate(fresh_records(tmp_path, committed, shift(-0.9 * tolerance), OTHER_ENV), committed) == 0
    out = capsys.readouterr().out
    assert out.count(" statistical ") == 4 and "fingerprint differs" in out
    assert gate(fresh_records(tmp_path, committed, shift(+1.1 * tolerance), OTHER_ENV), committed) == 0
    assert "warning: top-1 above baseline: st_adapter" in capsys.readouterr().out
    assert gate(fresh_records(tmp_path, committed, shift(-1.1 * tolerance), OTHER_ENV), committed) == 1
    out = capsys.readouterr().out
    assert "top-1 regressed: st_adapter" in out and out.count("FAIL:") == 1


def test_sigma_pools_the_seeds_with_the_dataset_and_the_measured_drift(committed: Path, tmp_path: Path):
    drift = fresh_records(tmp_path, committed, lambda r: dataclasses.replace(r, top1=r.top1 + 0.5), OTHER_ENV)
    out = tmp_path / "calibrated.json"
    assert check.main(["--results", str(committed), "--baselines", str(out), "--write-baselines",
                       "--drift", str(drift)]) == 0
    bset = load_baselines(out)
    drifts = {d["config"]: d for d in bset.calibration["drift"]}
    assert len(drifts) == 4 and all(d["delta"] == pytest.approx(0.5) for d in drifts.values())
    # every configuration's seeds are {x, x + 0.5, x + 3} (the drift's the same + 0.5): variance 31/12
    assert all(b.sigma == pytest.approx((31 / 12) ** 0.5, abs=1e-4) for b in bset.baselines)
    assert bset.calibration["environment_sigma"] == 0.0  # a 0.5 shift is within what seeds explain


def test_a_shared_environment_shift_widens_the_tolerance(committed: Path, tmp_path: Path):
    drift = fresh_records(tmp_path, committed, lambda r: dataclasses.replace(r, top1=r.top1 - 3.0), OTHER_ENV)
    out = tmp_path / "calibrated.json"
    assert check.main(["--results", str(committed), "--baselines", str(out), "--write-baselines",
                       "--drift", str(drift)]) == 0
    calibration = load_baselines(out).calibration
    # E[delta^2] = sigma^2 (1/3 + 1/3) + environment_sigma^2, with every delta -3 and sigma^2 = 31/12
    assert calibration["environment_sigma"] == pytest.approx((9 - 31 / 12 * 2 / 3) ** 0.5, abs=1e-4)
    assert all(d["z"] < 0 for d in calibration["drift"])
    # the measured change itself passes the statistical mode it calibrated
    shutil.copy(out, committed / BASELINES_NAME)
    assert gate(drift, committed) == 0


def test_drift_of_several_environments_is_pooled(committed: Path, tmp_path: Path):
    """Two measured environments, one seed each: each one's drift is listed, the shared part pooled."""
    envs = []
    for name, shift, digest in (("torch", 0.0, "env-a"), ("isa", -4.0, "env-b")):
        folder = fresh_records(tmp_path, committed, lambda r, shift=shift: dataclasses.replace(r, top1=r.top1 + shift),
                                {"digest": digest})
        kept = tmp_path / name
        for record in load_records(folder):
            if record.seed == 0:
                write_record(kept, record)
        envs.append(str(kept))
    out = tmp_path / "calibrated.json"
    assert check.main(["--results", str(committed), "--baselines", str(out), "--write-baselines",
                       "--drift", *envs]) == 0
    calibration = load_baselines(out).calibration
    assert calibration["drift_sources"] == sorted(envs)
    assert sorted({d["environment"] for d in calibration["drift"]}) == sorted(envs)
    assert len(calibration["drift"]) == 8 and all(d["n"] == 1 for d in calibration["drift"])
    # seed 0 of each configuration is its minimum; sigma^2 = 31/12 as above (one-seed groups add no df)
    sigma2 = 31 / 12
    deltas = [d["delta"] for d in calibration["drift"]]
    excess = [delta ** 2 - sigma2 * (1 / 3 + 1) for delta in deltas]
    assert calibration["environment_sigma"] == pytest.approx(max(0.0, sum(excess) / len(excess)) ** 0.5, abs=1e-3)
    assert calibration["environment_sigma"] > 0


def test_deterministic_facts_fail_in_either_mode(committed: Path, tmp_path: Path, capsys):
    def change(r: RunRecord) -> RunRecord:
        if _is(r, "st_adapter", "synth_appearance"):
            return dataclasses.replace(r, params_trainable=r.params_trainable + 1)
        if _is(r, "linear_probe", "synth_motion"):
            return dataclasses.replace(r, gflops_per_view=r.gflops_per_view * 1.006)
        return r

    for fingerprint in (None, OTHER_ENV):
        assert gate(fresh_records(tmp_path, committed, change, fingerprint), committed) == 1
        out = capsys.readouterr().out
        assert "trainable parameters changed: st_adapter[width=16] on synth_appearance" in out and "(+1)" in out
        assert "GFLOPs per view changed: linear_probe on synth_motion" in out


# -- Planted regressions: each must fail in both modes --------------------------------------------------

def _reversed_taps(monkeypatch):
    original = methods.temporal_conv.temporal_depthwise_conv
    monkeypatch.setattr(methods.temporal_conv, "temporal_depthwise_conv",
                        lambda x, w, b: original(x, w.flip(2), b))


def _zeroed_taps(monkeypatch):
    original = methods.temporal_conv.temporal_depthwise_conv
    monkeypatch.setattr(methods.temporal_conv, "temporal_depthwise_conv",
                        lambda x, w, b: original(x, torch.zeros_like(w), b))


def _frozen_adapters(monkeypatch):
    from methods import get_method, registry
    spec = get_method("st_adapter")
    head_only = dataclasses.replace(spec, attach=lambda model, cfg: [
        part for part in spec.attach(model, cfg) if part is model.head])
    monkeypatch.setitem(registry._METHODS, "st_adapter", head_only)


def _lr_off_by_ten(monkeypatch):
    import bench.engine.optim as optim
    original = optim.make_optimizer
    monkeypatch.setattr(optim, "make_optimizer", lambda named, lr, *rest: original(named, 10 * lr, *rest))


def _shuffled_frames(monkeypatch):
    import bench.data.dataset as dataset
    original = dataset.sample_indices
    monkeypatch.setattr(dataset, "sample_indices", lambda *args: original(*args)[::-1].copy())


PLANTED = {"reversed taps": (_reversed_taps, "function probe"), "zeroed taps": (_zeroed_taps, "function probe"),
           "frozen adapters": (_frozen_adapters, "trainable set changed"),
           "lr off by 10x": (_lr_off_by_ten, "learning-rate schedule changed"),
           "shuffled frames": (_shuffled_frames, "data probe")}


@pytest.mark.parametrize("bug", sorted(PLANTED))
@pytest.mark.parametrize("fingerprint", [None, OTHER_ENV], ids=["exact", "statistical"])
def test_planted_regression_fails(bug: str, fingerprint, committed: Path, tmp_path: Path, monkeypatch, capsys):
    fresh = fresh_records(tmp_path, committed, fingerprint=fingerprint)  # the accuracy did not move
    plant, message = PLANTED[bug]
    plant(monkeypatch)
    assert gate(fresh, committed) == 1
    out = capsys.readouterr().out
    assert "FAIL: " in out and message in out, out


# -- Tables ----------------------------------------------------------------------------------------------

def test_hand_edited_table_fails_with_a_diff(committed: Path, capsys):
    readme = committed / "README.md"
    text = readme.read_text()
    line = next(l for l in text.splitlines() if l.startswith("| st_adapter"))
    edited = line.replace(line.split("|")[5], line.split("|")[5].replace(".", "9", 1))
    assert edited != line
    readme.write_text(text.replace(line, edited))
    assert gate(committed, committed) == 1
    out = capsys.readouterr().out
    assert f"FAIL: {readme} differs from what the records generate" in out
    assert f"-{edited}" in out and f"+{line}" in out


def test_edited_latex_stray_table_and_missing_plot_fail(committed: Path, capsys):
    tex = next((committed / "tables").glob("synth_motion__*.tex"))
    tex.write_text(tex.read_text().replace("linear\\_probe", "linear\\_probing"))
    stray = committed / "tables" / "old_results.csv"
    stray.write_text("method,top1\nst_adapter,99\n")
    (committed / "plots" / "accuracy_vs_params.png").unlink()
    assert gate(committed, committed) == 1
    out = capsys.readouterr().out
    assert f"{tex} differs" in out
    assert f"{stray} is not generated from the records" in out
    assert "accuracy_vs_params.png is missing" in out


# -- Baselines file --------------------------------------------------------------------------------------

def test_a_tuned_configuration_is_gated_like_any_other(committed_template: Path, tmp_path: Path, capsys):
    """bench.run --tune chose another lr for st_adapter on synth_motion: its runs are another
    configuration beside the declared one, with a baseline, probes and a verdict of its own."""
    committed = tmp_path / "committed"
    shutil.copytree(committed_template, committed)
    for seed in (0, 1, 2):
        write_record(committed, gate_record("st_adapter", "synth_motion", seed, 80.0 + seed, tmp_path / "data",
                                            tuned={"base_lr": 0.16}))
    shutil.rmtree(committed / "tables")  # two st_adapter rows and no sweep: the paired reference is ambiguous
    generate(committed)
    assert check.main(["--results", str(committed), "--committed", str(committed), "--write-baselines"]) == 0
    tuned = [b for b in load_baselines(committed / BASELINES_NAME).baselines if b.method.endswith("(base_lr=0.16)")]
    assert [b.method for b in tuned] == ["st_adapter[width=16](base_lr=0.16)"] and tuned[0].n == 3
    capsys.readouterr()
    assert gate(committed, committed) == 0
    assert "passed (5 configuration(s)" in capsys.readouterr().out

    def drop_tuned(r: RunRecord) -> RunRecord:
        return dataclasses.replace(r, top1=r.top1 - 40) if r.config.get("tuned") else r
    assert gate(fresh_records(tmp_path, committed, drop_tuned, OTHER_ENV), committed) == 1
    out = capsys.readouterr().out
    assert "top-1 regressed: st_adapter[width=16](base_lr=0.16) on synth_motion" in out and out.count("FAIL:") == 1


def test_missing_baseline_warns_without_failing(committed: Path, capsys):
    baselines_file = committed / BASELINES_NAME
    data = json.loads(baselines_file.read_text())
    data["baselines"] = [b for b in data["baselines"] if not b["method"].startswith("st_adapter")]
    baselines_file.write_text(json.dumps(data))
    assert gate(committed, committed) == 0
    out = capsys.readouterr().out
    assert out.count("warning: no baseline for st_adapter") == 2
    assert "passed (2 configuration(s)" in out


def test_baseline_without_fresh_records_is_noted(committed: Path, tmp_path: Path, capsys):
    fresh = tmp_path / "fresh"
    for r in load_records(committed):
        if r.dataset == "synth_motion":
            write_record(fresh, r)
    assert gate(fresh, committed) == 0
    assert "note: 2 baseline(s) had no fresh records" in capsys.readouterr().out


def test_malformed_baselines_name_the_entry(committed: Path, capsys):
    baselines_file = committed / BASELINES_NAME
    data = json.loads(baselines_file.read_text())
    del data["baselines"][1]["sigma"]
    baselines_file.write_text(json.dumps(data))
    assert gate(committed, committed) == 2
    err = capsys.readouterr().err
    assert str(baselines_file) in err and "baselines[1]" in err and "'sigma'" in err


def test_missing_baselines_file_says_how_to_make_one(committed: Path, capsys):
    (committed / BASELINES_NAME).unlink()
    assert gate(committed, committed) == 2
    assert "--write-baselines" in capsys.readouterr().err


def test_baselines_file_is_byte_stable(committed: Path, tmp_path: Path):
    out = tmp_path / "again.json"
    assert check.main(["--results", str(committed), "--baselines", str(out), "--write-baselines"]) == 0
    assert out.read_bytes() == (committed / BASELINES_NAME).read_bytes()


def test_the_numerics_probe_under_the_baselines_fingerprint_must_give_their_bytes(committed: Path):
    """Same lock and profile on another CPU: a few training steps must give the baselines' bytes, or
    the gate says the profile does not hold here (before every exact row fails for the machine)."""
    from bench.gate.compare import compare
    bset = load_baselines(committed / "baselines.json")
    here = {"fingerprint": "same", "digests": {"st_adapter": "aaaa", "full_ft": "bbbb"}}
    bset.numerics = {"fingerprint": "same", "digests": {"st_adapter": "aaaa", "full_ft": "cccc"}}
    result = compare([], bset, probe_model=None, probe_data=None, probe_numerics=lambda: here)
    assert any("does not hold on this machine" in f and "full_ft" in f and "st_adapter" not in f.split(":")[0]
               for f in result.failures), result.failures
    bset.numerics = dict(here)
    assert compare([], bset, probe_model=None, probe_data=None, probe_numerics=lambda: here).failures == []
    bset.numerics = {"fingerprint": "elsewhere", "digests": {"full_ft": "cccc"}}
    other = compare([], bset, probe_model=None, probe_data=None, probe_numerics=lambda: here)
    assert other.failures == [] and any("not compared" in n for n in other.notes)
