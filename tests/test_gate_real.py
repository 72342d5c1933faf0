"""The gate against the committed records and baselines of the embedded default, with real training.

tests/test_check.py plants each regression into records whose accuracy did not move, so the probes
must catch it. Here a regression is trained for real: ST-Adapter on synth_motion (seed 0, the
default config as committed) with every clip's frames in a random order. The statistical mode must
fail on the accuracy itself, not only on the data probe. Each committed measured environment change
(results/drift/: torch 2.15.0 instead of the lock's 2.14.1; torch's and MKL's kernels at another ISA
level) must pass that same mode.

Slow: pre-trains the synthetic backbone on first use (cached under $BENCH_CACHE; CI's default run
reuses it) and trains one run.
"""
from __future__ import annotations

import dataclasses
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
DRIFTS = sorted((COMMITTED / "drift").iterdir())


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


@pytest.mark.parametrize("environment", DRIFTS, ids=[d.name for d in DRIFTS])
def test_a_measured_environment_change_passes_the_statistical_gate(environment, capsys):
    committed = {r.config_hash for r in load_records(COMMITTED)}
    drifted = load_records(environment)
    assert drifted and {r.config_hash for r in drifted} <= committed
    assert all(r.fingerprint["digest"] != committed_record(r.method, r.dataset, r.seed).fingerprint["digest"]
               for r in drifted if r.seed == 0)
    status, out = statistical_gate(environment, capsys)
    assert status == 0, out
    assert "statistical" in out and "FAIL" not in out, out
