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
import torch
import yaml

from bench.engine import CHECKPOINT_NAME, Execution, execute_run, work_dir
from bench.launch import JobReport, LaunchOptions, launch
from bench.records import find_record, load_records
from bench.run import build_parser, launch_options
from bench.slurm_profile import PROFILES_DIR
from slurm_helpers import slurm_cluster  # noqa: F401
from tests.engine_helpers import final_weights, same_metrics, tiny_run, trained
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
    [ddp] = load_records(tmp_path / "two")
    assert ddp.extra["world_size"] == 2 and ddp.extra["micro_batch"] == 4
    assert same_metrics(single, ddp)
    w_one, w_two = final_weights(tmp_path / "one", cfg), final_weights(tmp_path / "two", cfg)
    assert trained(w_one)
    assert all(torch.allclose(w_one[k], w_two[k], atol=1e-5) for k in w_one)
