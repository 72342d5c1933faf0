"""bench.run against the real local SLURM test cluster (slurm/cluster/up.sh): the grid as a job
array through a profile, and a preempted run that SLURM requeues and that resumes from its checkpoint.

Skipped (with the reason) when the cluster is not up.
"""
import time

import pytest
from slurm_helpers import slurm_cluster, slurm_executor  # noqa: F401

from bench.engine.checkpoint import CHECKPOINT_NAME
from bench.engine.execution import Execution
from bench.engine.loop import work_dir
from bench.launch.submit import RunJob
from bench.run import main
from bench.store.records import find_record, load_record, load_records
from tests.engine_helpers import tiny_run

pytestmark = [pytest.mark.slurm, pytest.mark.slow]


def test_grid_runs_as_a_slurm_job_array(slurm_cluster, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path / "cache"))
    results = tmp_path / "results"
    argv = ["--datasets", "synth_motion", "--methods", "linear_probe,st_adapter", "--backbone", "vit_tiny_test",
            "--weights", "random", "--recipe", "synth", "--seeds", "1", "--epochs", "1", "--batch-size", "64",
            "--executor", "slurm", "--slurm-profile", "local-test", "--results", str(results)]
    assert main(argv) == 0
    assert "submitted 2 runs as 2 slurm job(s)" in capsys.readouterr().out
    assert sorted(r.method for r in load_records(results)) == ["linear_probe", "st_adapter"]


def test_preempted_run_is_requeued_and_resumes_from_its_checkpoint(slurm_cluster, tmp_path):
    cfg = tiny_run(tmp_path / "data", method="linear_probe", epochs=150)
    results = tmp_path / "results"
    job = slurm_executor(tmp_path / "jobs").submit(RunJob([cfg], str(results), Execution(progress=False), False))
    checkpoint = work_dir(results, cfg) / CHECKPOINT_NAME
    deadline = time.monotonic() + 120
    while not checkpoint.exists():
        assert time.monotonic() < deadline, f"no checkpoint after 120 s; job log {job.paths.stderr}"
        assert find_record(results, cfg.hash()) is None, "the run finished before it could be preempted"
        time.sleep(0.2)
    job._interrupt()  # what SLURM does on preemption: USR2, then submitit checkpoints and requeues
    job.result()
    record = load_record(find_record(results, cfg.hash()))
    assert record.extra["attempts"] == 2
