"""The gate against the committed records and baselines of the embedded default, with real training.

tests/test_check.py plants each regression into records whose accuracy did not move, so the probes
must catch it. Here a regression is trained for real: ST-Adapter on synth_motion (seed 0, the
default config as committed) with every clip's frames in a random order. The statistical mode must
fail on the accuracy itself, not only on the data probe. Each committed measured environment change
(results/drift/README.md: another CPU vendor, another torch, kernels at another ISA level), left out of
the calibration, must lie within the tolerance the others calibrate.

Slow: pre-trains the synthetic backbone on first use (cached under $BENCH_CACHE; CI's default run
reuses it) and trains one run.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

import bench.data.dataset as dataset
from bench import check
from bench.config import RunConfig
from bench.engine.execution import Execution
from bench.engine.loop import execute_run
from bench.store.records import load_records, write_record

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]
COMMITTED = REPO / "results"
CALIBRATION = json.loads((COMMITTED / "baselines.json").read_text())["calibration"]
DRIFTS = CALIBRATION.get("drift_sources", [])


def committed_record(method: str, dataset_name: str, seed: int):
    [record] = [r for r in load_records(COMMITTED) if (r.method, r.dataset, r.seed) == (method, dataset_name, seed)]
    return record


def statistical_gate(fresh: Path, capsys) -> tuple[int, str]:
    """bench.check on ``fresh`` against the committed results; the records carry another fingerprint."""
    status = check.main(["--results", str(fresh), "--committed", str(COMMITTED)])
    return status, capsys.readouterr().out


def test_frames_shuffled_in_the_loader_fail_the_statistical_gate_on_accuracy(tmp_path, monkeypatch, capsys):
    committed = committed_record("st_adapter", "synth_motion", 0)
    cfg = RunConfig.from_dict(committed.config)
    assert cfg.hash() == committed.config_hash
    shuffle = np.random.default_rng(0)
    original = dataset.sample_indices
    monkeypatch.setattr(dataset, "sample_indices",
                        lambda *args: shuffle.permuted(original(*args), axis=-1))
    record = execute_run(cfg, tmp_path / "trained", Execution(progress=False, threads=1))
    fresh = tmp_path / "fresh"
    write_record(fresh, dataclasses.replace(record, fingerprint={**record.fingerprint, "digest": "another machine"}))
    monkeypatch.undo()  # the gate's own data probe reads frames in order again: only the accuracy can fail
    status, out = statistical_gate(fresh, capsys)
    assert status == 1, out
    assert "top-1 regressed: st_adapter" in out and "synth_motion" in out, out
    assert record.top1 < committed.top1 - 20, (record.top1, committed.top1)


@pytest.mark.parametrize("environment", DRIFTS, ids=[d.split(":")[0].rsplit("/", 1)[-1] for d in DRIFTS])
def test_a_measured_environment_change_lies_within_what_the_others_calibrate(environment):
    """Calibrated on every other measured environment, this one's drift (its records against its own
    reference: the same code on the baselines' machine) stays within K standard errors."""
    from bench.check import _drift_records
    from bench.gate.baselines import K_SIGMAS, Drift, calibrate, group
    assert len(DRIFTS) > 1, "the committed calibration names its drift pairs"
    pairs = {spec: _drift_records(":".join(str(REPO / part) for part in spec.split(":"))) for spec in DRIFTS}
    base = group(load_records(COMMITTED))
    others = {spec: Drift(group(runs), None if ref is None else group(ref))
              for spec, (runs, ref) in pairs.items() if spec != environment}
    sigmas, facts = calibrate(base, {**others, environment: Drift(group(pairs[environment][0]),
                                                                  None if pairs[environment][1] is None
                                                                  else group(pairs[environment][1]))})
    held_out = facts["held_out_max_abs_z"][environment]
    assert held_out < K_SIGMAS, (environment, held_out)
    assert held_out == CALIBRATION["held_out_max_abs_z"][environment]  # the committed calibration is this one
