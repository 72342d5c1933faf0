"""Real submitit jobs with the local executor: a job array with a failing job, concurrent record
writes, and a 2-process gloo DDP run that matches the 1-process run of the same global batch."""
import dataclasses
import sys

import cloudpickle
import pytest
import submitit

from bench.engine.execution import Execution
from bench.engine.loop import execute_run
from bench.launch.submit import LaunchOptions, job_folder, launch, make_executor
from bench.store.records import find_record, load_records, write_record
from tests.engine_helpers import assert_ddp_matches_single, generated_tiny_world, tiny_run
from tests.record_factory import make_record

pytestmark = pytest.mark.slow

# The jobs' Python imports this repository but not the tests package: ship test functions by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return generated_tiny_world(tmp_path_factory.mktemp("synth-cache"))


def test_job_array_reports_the_failing_job_and_finishes_the_others(tmp_path, data_root, capsys):
    good = [tiny_run(data_root, method="linear_probe", seed=s) for s in (0, 1)]
    bad = dataclasses.replace(tiny_run(data_root, method="adapter"), method_options={"width": -1})
    options = LaunchOptions(executor="local", runs_per_job=1, poll_s=0.2)
    reports = launch([good[0], bad, good[1]], tmp_path, Execution(progress=False), options)

    assert [r.ok for r in reports] == [True, False, True]
    failed = reports[1]
    assert failed.stderr is not None and failed.stderr.is_file()
    assert "width=-1" in failed.error and "width=-1" in failed.stderr.read_text()
    shown = capsys.readouterr()
    assert f"job {failed.job_id} FAILED" in shown.out + shown.err and str(failed.stderr) in shown.out + shown.err
    assert {r.config_hash for r in load_records(tmp_path)} == {c.hash() for c in good}
    assert find_record(tmp_path, bad.hash()) is None


def test_local_jobs_log_where_their_controller_made_the_folder(tmp_path):
    """submitit's local controller mkdirs its folder by the literal path, then opens its log there at
    once; with a per-job ``%j`` folder it raced the submitting process that creates ``<pid>/`` (CI
    lost a job this way, unlogged). The local folder must need no job id to exist."""
    executor = make_executor(LaunchOptions(executor="local"), job_folder(tmp_path / "submitit", "local"))
    assert submitit.core.utils.JobPaths.get_first_id_independent_folder(executor.folder) == executor.folder
    assert job_folder(tmp_path, "slurm").name == "%j"  # sbatch creates each job's folder itself


def write_many(results: str, dataset: str, count: int) -> None:
    for seed in range(count):
        write_record(results, make_record("linear_probe", dataset, seed, top1=50.0))


def test_concurrent_jobs_writing_records_lose_nothing(tmp_path):
    executor = submitit.LocalExecutor(tmp_path / "jobs")
    executor.update_parameters(timeout_min=5)
    with executor.batch():
        jobs = [executor.submit(write_many, str(tmp_path), f"dataset{j}", 25) for j in range(4)]
    for job in jobs:
        job.result()
    records = load_records(tmp_path)  # every file parses: no torn writes
    assert len(records) == 100
    assert not list((tmp_path / "runs").glob(".tmp-*"))


def test_two_process_ddp_matches_one_process(tmp_path, data_root):
    """Two gloo ranks with the same global batch train what one process trains: metrics and per-video
    top-5 exactly; loss curve, weights and probabilities to 1e-5, not to the bit, because the
    all-reduce sums the ranks' gradients in another order than one process's batch reduction does
    (the float32 sums differ in their last bits; under the portable profile nothing else can)."""
    cfg = tiny_run(data_root, head_dropout=0.0)  # dropout masks depend on how the batch is split
    execution = Execution(progress=False, keep_checkpoint=True)
    single = execute_run(cfg, tmp_path / "one", execution)
    reports = launch([cfg], tmp_path / "two", execution,
                     LaunchOptions(executor="local", tasks_per_job=2, poll_s=0.2))
    assert reports[0].ok, reports[0].error
    assert_ddp_matches_single(cfg, single, tmp_path / "two", tmp_path / "one")
