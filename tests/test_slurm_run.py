"""bench's launcher against the real local SLURM test cluster (slurm/cluster/up.sh): a 2-task DDP job,
a failing job in an array, and a job cancelled while it runs.

The jobs go through what ``bench.run --executor slurm --slurm-profile FILE`` does: the profile's
submitit parameters and execution settings (``bench.run.launch_options``), then ``bench.launch.launch``.
Skipped (with the reason) when the cluster is not up.
"""
import dataclasses
import subprocess
import threading
import time
from pathlib import Path

import pytest
import yaml
from slurm_helpers import slurm_cluster  # noqa: F401

from bench.engine.checkpoint import CHECKPOINT_NAME
from bench.engine.execution import Execution
from bench.engine.loop import execute_run, work_dir
from bench.launch.options import launch_options
from bench.launch.slurm_profile import PROFILES_DIR
from bench.launch.submit import JobReport, LaunchOptions, launch
from bench.run import build_parser
from bench.store.records import find_record, load_records
from tests.engine_helpers import assert_ddp_matches_single, tiny_run
from tests.test_run_launch import data_root  # noqa: F401  (the tiny synthetic world, generated once)

pytestmark = [pytest.mark.slurm, pytest.mark.slow]


def slurm_launch_setup(tmp_path: Path, **profile_changes) -> tuple[LaunchOptions, Execution]:
    """The launcher's options as bench.run builds them from a profile file: the local-test profile
    with `profile_changes`."""
    profile = {**yaml.safe_load((PROFILES_DIR / "local-test.yaml").read_text()), **profile_changes}
    path = tmp_path / "profile.yaml"
    path.write_text(yaml.safe_dump(profile))
    args = build_parser().parse_args(["--executor", "slurm", "--slurm-profile", str(path)])
    options, execution = launch_options(args)
    return dataclasses.replace(options, poll_s=0.2), execution


def test_two_task_job_runs_ddp_and_matches_one_process(slurm_cluster, tmp_path, data_root):  # noqa: F811
    cfg = tiny_run(data_root, head_dropout=0.0)  # dropout masks depend on how the batch is split
    options, execution = slurm_launch_setup(tmp_path, gpus_per_node=2, tasks_per_node=2)
    assert options.slurm_params["tasks_per_node"] == 2 and options.tasks_per_job == 2
    execution = dataclasses.replace(execution, keep_checkpoint=True)
    single = execute_run(cfg, tmp_path / "one", execution)
    [report] = launch([cfg], tmp_path / "two", execution, options)
    assert report.ok, f"{report.error}\njob log: {report.stderr}"
    assert_ddp_matches_single(cfg, single, tmp_path / "two", tmp_path / "one")


def test_failing_job_is_reported_with_its_log_and_the_others_finish(slurm_cluster, tmp_path, data_root,  # noqa: F811
                                                                    capsys):
    good = [tiny_run(data_root, method="linear_probe", seed=s, epochs=1) for s in (0, 1)]
    bad = dataclasses.replace(tiny_run(data_root, method="adapter", epochs=1), method_options={"width": -1})
    options, execution = slurm_launch_setup(tmp_path)
    reports = launch([good[0], bad, good[1]], tmp_path, execution, options)

    assert [r.ok for r in reports] == [True, False, True]
    failed = reports[1]
    assert failed.stderr is not None and failed.stderr.is_file()
    assert "width=-1" in failed.error and "width=-1" in failed.stderr.read_text()
    shown = capsys.readouterr()
    assert f"job {failed.job_id} FAILED" in shown.out and f"job log: {failed.stderr}" in shown.out
    assert {r.config_hash for r in load_records(tmp_path)} == {c.hash() for c in good}
    assert find_record(tmp_path, bad.hash()) is None


def launch_in_background(*args) -> tuple[threading.Thread, list[list[JobReport]]]:
    """launch(*args) in a thread, so that the test can act on its jobs and bound how long it takes."""
    reports: list[list[JobReport]] = []
    thread = threading.Thread(target=lambda: reports.append(launch(*args)), daemon=True)
    thread.start()
    return thread, reports


def submitted_jobs(results: Path) -> list[str]:
    """Ids of the SLURM jobs the launcher submitted for `results` (one submitit folder each)."""
    return sorted(p.name for p in (results / "work" / "submitit").glob("[0-9]*") if p.is_dir())


def test_cancelled_job_does_not_hang_the_launcher(slurm_cluster, tmp_path, data_root, capsys):  # noqa: F811
    cfg = tiny_run(data_root, method="linear_probe", epochs=3000)  # minutes of training: cancelled long before
    options, execution = slurm_launch_setup(tmp_path)
    thread, reports = launch_in_background([cfg], tmp_path, execution, options)
    try:
        checkpoint = work_dir(tmp_path, cfg) / CHECKPOINT_NAME
        deadline = time.monotonic() + 60
        while not checkpoint.exists():  # training, past its first epoch
            assert thread.is_alive() and time.monotonic() < deadline, "the run did not get to train"
            time.sleep(0.2)
        [job_id] = submitted_jobs(tmp_path)
        subprocess.run(["scancel", job_id], check=True, timeout=10)
        cancelled = time.monotonic()
        thread.join(timeout=60)
        assert not thread.is_alive(), "the launcher still waits 60 s after its only job was cancelled"
    finally:  # never leave minutes of training on the cluster behind a failed assertion
        subprocess.run(["scancel", *submitted_jobs(tmp_path)], timeout=10)
    took = time.monotonic() - cancelled
    [[report]] = reports
    assert not report.ok and report.job_id == job_id
    assert "CANCELLED" in report.error and report.stderr is not None
    assert f"job {job_id} FAILED" in capsys.readouterr().out
    assert find_record(tmp_path, cfg.hash()) is None
    print(f"the launcher returned {took:.1f} s after scancel")
