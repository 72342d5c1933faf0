"""bench.run against the real local SLURM test cluster (slurm/cluster/up.sh): the grid as a job
array through a profile; runs stopped by SLURM (preemption, scontrol requeue) that resume at their
last finished step and end exactly as an uninterrupted run; torch threads = cpus_per_task; a refused
submission.

Skipped (with the reason) when the cluster is not up.
"""
import re
import subprocess
import time

import pytest
from slurm_helpers import slurm_cluster, slurm_executor  # noqa: F401

from bench.engine.checkpoint import CHECKPOINT_NAME
from bench.engine.execution import Execution
from bench.engine.loop import LOG_NAME, execute_run, work_dir
from bench.launch.submit import RunJob
from bench.run import main
from bench.store.records import find_record, load_record, load_records
from tests.engine_helpers import same_metrics, tiny_run

pytestmark = [pytest.mark.slurm, pytest.mark.slow]


def test_grid_runs_as_a_slurm_job_array(slurm_cluster, tmp_path, world_cache, monkeypatch, capsys):
    monkeypatch.setenv("BENCH_CACHE", str(world_cache))
    results = tmp_path / "results"
    argv = ["--datasets", "synth_motion", "--methods", "linear_probe,st_adapter", "--backbone", "vit_tiny_test",
            "--weights", "random", "--recipe", "synth", "--seeds", "1", "--epochs", "1", "--batch-size", "64",
            "--executor", "slurm", "--slurm-profile", "local-test", "--results", str(results)]
    assert main(argv) == 0
    assert "submitted 2 runs as 2 slurm job(s)" in capsys.readouterr().out
    assert sorted(r.method for r in load_records(results)) == ["linear_probe", "st_adapter"]


def test_tuning_trials_run_as_one_slurm_job_array(slurm_cluster, tmp_path, world_cache, monkeypatch, capsys):
    monkeypatch.setenv("BENCH_CACHE", str(world_cache))
    results = tmp_path / "results"
    argv = ["--datasets", "synth_motion", "--methods", "linear_probe", "--backbone", "vit_tiny_test", "--weights",
            "random", "--recipe", "synth", "--seeds", "1", "--epochs", "1", "--batch-size", "64", "--tune", "lr",
            "--tune-points", "3", "--tune-seeds", "1", "--executor", "slurm", "--slurm-profile", "local-test",
            "--results", str(results)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "submitted 3 runs as 3 slurm job(s)" in out
    jobs = [p.name for p in (results / "tuning" / "work" / "submitit").iterdir() if re.fullmatch(r"\d+_\d+", p.name)]
    arrays = {name.split("_")[0] for name in jobs}  # array jobs are <array id>_<index>
    assert len(jobs) == 3
    assert len(arrays) == 1, f"the trials were not one job array: {sorted(arrays)}"
    assert len(load_records(results / "tuning", trials=True)) == 3 and len(load_records(results)) == 1


def _train_until_checkpointed(job, results, cfg) -> None:
    """Wait until the job's run has finished an epoch (so a checkpoint exists) and is still training."""
    checkpoint = work_dir(results, cfg) / CHECKPOINT_NAME
    deadline = time.monotonic() + 120
    while not checkpoint.exists():
        assert time.monotonic() < deadline, f"no checkpoint after 120 s; job log {job.paths.stderr}"
        assert find_record(results, cfg.hash()) is None, "the run finished before it could be stopped"
        time.sleep(0.2)


def _stop_saves(results, cfg) -> list[str]:
    log = (work_dir(results, cfg) / LOG_NAME).read_text()
    return [line for line in log.splitlines() if "stop requested by" in line]


# 10 optimizer steps per epoch (20 clips, batch 2), with dropout: a stop lands mid-epoch, and the
# resumed run must continue at the very next step, with the same random state, to end bit-identical.
def _long_run(tmp_path):
    return tiny_run(tmp_path / "data", method="st_adapter", epochs=40, batch_size=2, head_dropout=0.5)


@pytest.mark.parametrize("how", ["preempted (USR2)", "scontrol requeue (TERM)"])
def test_stopped_run_resumes_at_its_last_step_and_ends_as_an_uninterrupted_run(slurm_cluster, tmp_path, how):
    cfg = _long_run(tmp_path)
    results = tmp_path / "results"
    job = slurm_executor(tmp_path / "jobs").submit(RunJob([cfg], str(results), Execution(progress=False), False))
    _train_until_checkpointed(job, results, cfg)
    if how.startswith("preempted"):
        job._interrupt()  # what SLURM does on preemption: USR2; submitit checkpoints and requeues
    else:
        subprocess.run(["scontrol", "requeue", job.job_id], check=True, timeout=10)
    job.result()
    record = load_record(find_record(results, cfg.hash()))
    assert record.extra["attempts"] == 2
    [saved] = _stop_saves(results, cfg)  # saved at the step the signal found, not at an epoch's end
    uninterrupted = execute_run(cfg, tmp_path / "uninterrupted", Execution(progress=False, threads=1))
    assert same_metrics(record, uninterrupted), saved


def test_a_job_runs_torch_on_its_cpus_per_task(slurm_cluster, tmp_path, world_cache, monkeypatch):
    monkeypatch.setenv("BENCH_CACHE", str(world_cache))
    profile = tmp_path / "two-cpus.yaml"
    profile.write_text("partition: test\ntime_min: 10\ngpus_per_node: 1\ncpus_per_gpu: 2\nmem_gb: 1\ndevice: cpu\n")
    results = tmp_path / "results"
    assert main(["--datasets", "synth_motion", "--methods", "linear_probe", "--backbone", "vit_tiny_test",
                 "--weights", "random", "--recipe", "synth", "--seeds", "1", "--epochs", "1", "--batch-size", "64",
                 "--executor", "slurm", "--slurm-profile", str(profile), "--results", str(results)]) == 0
    [record] = load_records(results)
    assert record.hardware["torch_threads"] == 2 and record.fingerprint["backends"]["threads"] == 2


def test_a_refused_submission_is_one_error_line_and_exit_2(slurm_cluster, tmp_path, world_cache, monkeypatch, capfd):
    monkeypatch.setenv("BENCH_CACHE", str(world_cache))
    profile = tmp_path / "two-nodes.yaml"  # the test cluster has one node
    profile.write_text("partition: test\ntime_min: 10\nnodes: 2\ngpus_per_node: 1\ncpus_per_gpu: 1\n")
    assert main(["--datasets", "synth_motion", "--methods", "linear_probe", "--backbone", "vit_tiny_test",
                 "--weights", "random", "--recipe", "synth", "--seeds", "1", "--epochs", "1",
                 "--executor", "slurm", "--slurm-profile", str(profile), "--results", str(tmp_path)]) == 2
    err_lines = [line for line in capfd.readouterr().err.splitlines() if "sbatch" in line or "error" in line]
    assert len(err_lines) == 1 and err_lines[0].startswith("error: the slurm scheduler refused the 1 job(s)")
    assert "Node count specification invalid" in err_lines[0]
