"""submitit against the real test cluster: results, failures, cancellation, impossible requests.

These need the cluster of slurm/cluster/up.sh and skip (with the reason) when it is not up.
"""
import os
import subprocess
import sys
import time
from pathlib import Path

import cloudpickle
import pytest
from slurm_helpers import slurm_cluster, slurm_executor, wait_done, wait_for_state  # noqa: F401
from submitit.core.utils import FailedJobError, UncompletedJobError

pytestmark = pytest.mark.slurm

# The jobs' Python cannot import this test module: ship its functions by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])


def double_and_describe(value: int) -> tuple[int, dict[str, str]]:
    keys = ("SLURM_JOB_ID", "SLURM_JOB_PARTITION", "CUDA_VISIBLE_DEVICES", "SLURM_NTASKS")
    return 2 * value, {key: os.environ.get(key, "") for key in keys}


def fail_with(message: str) -> None:
    raise ValueError(message)


def test_job_returns_its_result(slurm_cluster, tmp_path):
    job = slurm_executor(tmp_path).submit(double_and_describe, 21)
    assert wait_done(job) == "COMPLETED"
    value, env = job.result()
    assert value == 42
    # One fake GPU, scheduled through gres: which one depends on what earlier tests' jobs still hold.
    assert env.pop("CUDA_VISIBLE_DEVICES") in {str(i) for i in range(slurm_cluster.gpus)}
    assert env == {"SLURM_JOB_ID": job.job_id, "SLURM_JOB_PARTITION": slurm_cluster.partition,
                   "SLURM_NTASKS": "1"}


def test_failing_job_reports_its_log(slurm_cluster, tmp_path):
    job = slurm_executor(tmp_path).submit(fail_with, "deliberate failure 7193")
    assert wait_done(job) == "FAILED"
    with pytest.raises(FailedJobError) as info:
        job.result()
    message = str(info.value)
    assert "deliberate failure 7193" in message
    assert str(job.paths.stderr) in message
    assert "deliberate failure 7193" in job.paths.stderr.read_text()


def test_impossible_request_is_refused_at_submit(slurm_cluster, tmp_path):
    executor = slurm_executor(tmp_path, gpus_per_node=slurm_cluster.gpus + 1)
    started = time.monotonic()
    with pytest.raises(FailedJobError, match="Requested node configuration is not available"):
        executor.submit(time.sleep, 1)
    assert time.monotonic() - started < 10  # refused by sbatch, not left pending


def gpu_and_interval(seconds: float) -> tuple[str, float, float]:
    start = time.time()
    time.sleep(seconds)
    return os.environ["CUDA_VISIBLE_DEVICES"], start, time.time()


def test_array_tasks_run_at_once_on_distinct_fake_gpus(slurm_cluster, tmp_path):
    executor = slurm_executor(tmp_path)
    jobs = executor.map_array(gpu_and_interval, [3.0] * slurm_cluster.gpus)
    for job in jobs:
        assert wait_done(job) == "COMPLETED"
    gpus, starts, ends = zip(*(job.result() for job in jobs))
    assert sorted(gpus) == [str(i) for i in range(slurm_cluster.gpus)]
    assert max(starts) < min(ends), "array tasks did not run concurrently"


def rank_and_gpus() -> tuple[int, int, str]:
    import submitit

    env = submitit.JobEnvironment()
    return env.global_rank, env.num_tasks, os.environ["CUDA_VISIBLE_DEVICES"]


def test_two_task_job_gets_two_ranks(slurm_cluster, tmp_path):
    job = slurm_executor(tmp_path, gpus_per_node=2, tasks_per_node=2).submit(rank_and_gpus)
    assert wait_done(job) == "COMPLETED"
    assert sorted(job.results()) == [(0, 2, "0,1"), (1, 2, "0,1")]


def test_up_refuses_to_start_a_second_time(slurm_cluster):
    up = Path(__file__).resolve().parents[1] / "slurm" / "cluster" / "up.sh"
    result = subprocess.run(["bash", str(up)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    assert "already running" in result.stderr


# Last in this file: a cancelled job that ignores SIGTERM (submitit's jobs do) stays "completing"
# for about 7 s (slurmd waits at least 5 s before SIGKILL), and holds back scheduling meanwhile.
def test_cancelled_job_does_not_hang(slurm_cluster, tmp_path):
    job = slurm_executor(tmp_path).submit(time.sleep, 600)
    wait_for_state(job, lambda state: state == "RUNNING", "running")
    job.cancel()
    # submitit knows a job that left no result only through sacct: without accounting this would
    # wait forever.
    assert wait_done(job, timeout_s=30).startswith("CANCELLED")
    started = time.monotonic()
    with pytest.raises(UncompletedJobError, match="has not produced any output"):
        job.result()
    assert time.monotonic() - started < 10
