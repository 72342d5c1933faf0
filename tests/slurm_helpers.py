"""Shared by the SLURM tests: find the local test cluster of slurm/cluster/up.sh, or skip.

Import the fixture into a test module (`from slurm_helpers import slurm_cluster`). With
BENCH_SLURM_REQUIRED=1 (set by CI after bringing the cluster up) a cluster that does not answer
fails the tests instead of skipping them, so a broken bring-up cannot pass as "skipped".
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import submitit

from bench.launch.slurm_profile import load_profile

SLURM_DIR = Path(os.environ.get("BENCH_SLURM_DIR", "/tmp/petl-slurm"))
START_HINT = "start it with `sudo slurm/cluster/up.sh` (and stop it with slurm/cluster/down.sh)"


@dataclass(frozen=True)
class TestCluster:
    node: str
    partition: str
    cpus: int
    gpus: int


def _run(*command: str) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, timeout=2)


def find_cluster() -> TestCluster | str:
    """The test cluster when it answers, else why it cannot be used."""
    if shutil.which("sbatch") is None:
        return f"Slurm is not installed; {START_HINT}"
    try:
        ping = _run("scontrol", "ping")
        node_line = _run("sinfo", "-h", "-N", "-o", "%N %P %c %G %T").stdout.split("\n")[0]
    except subprocess.TimeoutExpired:
        return f"slurmctld did not answer within 2 s; {START_HINT}"
    if ping.returncode != 0 or " is UP" not in ping.stdout:
        return f"slurmctld is not up ({(ping.stdout + ping.stderr).strip()}); {START_HINT}"
    fields = node_line.split()
    if len(fields) != 5 or fields[4] not in ("idle", "mixed", "allocated", "completing"):
        return f"the test cluster's node is not usable (sinfo: {node_line!r}); {START_HINT}"
    gpus = re.search(r"gpu:(\d+)", fields[3])
    return TestCluster(node=fields[0], partition=fields[1].rstrip("*"), cpus=int(fields[2]),
                       gpus=int(gpus.group(1)) if gpus else 0)


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[TestCluster]:
    """The running test cluster; Slurm's commands are pointed at it for the session."""
    with pytest.MonkeyPatch.context() as patch:
        conf = SLURM_DIR / "etc" / "slurm.conf"
        if "SLURM_CONF" not in os.environ and conf.is_file():
            patch.setenv("SLURM_CONF", str(conf))
        cluster = find_cluster()
        if isinstance(cluster, str):
            if os.environ.get("BENCH_SLURM_REQUIRED") == "1":
                pytest.fail(f"BENCH_SLURM_REQUIRED=1 but {cluster}")
            pytest.skip(cluster)
        # A job that ends without a result (cancelled, killed) is waited for this long before
        # submitit reports it; its default 15 s would only slow the tests down.
        patch.setattr(submitit.SlurmJob, "_results_timeout_s", 2)
        yield cluster


def slurm_executor(folder: Path, **overrides: Any) -> submitit.AutoExecutor:
    """An executor for the test cluster, with the local-test profile's resources."""
    executor = submitit.AutoExecutor(folder, cluster="slurm")  # never let submitit guess
    executor.update_parameters(**{**load_profile("local-test").to_submitit_params(), **overrides})
    return executor


def wait_for_state(job: submitit.Job, accept: Callable[[str], bool], what: str,
                   timeout_s: float = 60) -> str:
    """Poll the job's state as the scheduler reports it (sacct) until `accept(state)`; fail after
    `timeout_s`. (`job.state` alone is a cache, and `job.done()` looks at the result file first.)"""
    deadline = time.monotonic() + timeout_s
    while True:
        state = job.watcher.get_state(job.job_id, mode="force")
        if accept(state):
            return state
        if time.monotonic() > deadline:
            pytest.fail(f"job {job.job_id} not {what} after {timeout_s} s (state {state})")
        time.sleep(0.3)


def wait_done(job: submitit.Job, timeout_s: float = 60) -> str:
    """The job's final state, once the scheduler has it."""
    return wait_for_state(job, lambda _: job.watcher.is_done(job.job_id, mode="cache"), "finished",
                          timeout_s)
