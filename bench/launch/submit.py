"""Launching the matched grid through submitit: local processes, SLURM job arrays, or in-process (debug).

Each submitit job runs a list of runs one after another (SLURM: one run per job; local: the grid is
dealt out to as many jobs as run in parallel, so each process pays the start-up and the decoding of
the small synthetic videos once). Jobs are ``Checkpointable``: on preemption or a time limit SLURM
requeues them and each run resumes from its last epoch checkpoint. A failing run fails its job with
the log paths in the error; the other runs and jobs go on.
"""
from __future__ import annotations

import contextlib
import io
import logging
import os
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import submitit

from bench.config import RunConfig
from bench.engine.execution import Execution
from bench.engine.loop import LOG_NAME, execute_run, work_dir
from bench.engine.preemption import STOPS
from bench.progress import progress_bar
from bench.store.records import find_record

log = logging.getLogger(__name__)

EXECUTORS = ("local", "slurm", "debug")
SUBMITIT_SUBDIR = "submitit"


class RunFailures(RuntimeError):
    """Some runs of a job failed; the message names each run, its error and its log file."""


class SubmissionRefused(RuntimeError):
    """The scheduler refused the jobs (sbatch's own reason in the message): bad input, exit code 2."""


class RunJob(submitit.helpers.Checkpointable):
    """One submitit job: its runs in order, skipping those already finished.

    Requeued jobs are this object pickled at the time of the signal, so ``finished`` survives a
    requeue and a ``--force`` run is not repeated after it completed.
    """

    def __init__(self, runs: Sequence[RunConfig], results_dir: str, execution: Execution, force: bool):
        self.runs = list(runs)
        self.results_dir = results_dir
        self.execution = execution
        self.force = force
        self.finished: set[str] = set()

    def __call__(self) -> list[str]:
        _export_distributed_env()
        if _in_slurm_job():
            STOPS.install()  # save at the next finished step when SLURM says stop (bench.engine.preemption)
        failures = []
        for cfg in self.runs:
            if STOPS.pending:  # the stop came while the previous run evaluated: it finished, requeue now
                STOPS.honour(None)
            if cfg.name in self.finished or (not self.force and find_record(self.results_dir, cfg.hash())):
                continue
            try:
                execute_run(cfg, self.results_dir, self.execution)
            except Exception:  # one broken run must not stop the others in this job
                failures.append(f"{cfg.name}: {traceback.format_exc(limit=-3).strip()}\n"
                                f"  run log: {work_dir(self.results_dir, cfg) / LOG_NAME}")
                log.exception("run %s failed", cfg.name)
                continue
            self.finished.add(cfg.name)
        if failures:
            raise RunFailures(f"{len(failures)} of {len(self.runs)} runs failed:\n" + "\n".join(failures))
        return sorted(self.finished)


def _in_slurm_job() -> bool:
    try:
        return submitit.JobEnvironment().cluster == "slurm"
    except RuntimeError:  # not inside a submitit job
        return False


def _export_distributed_env() -> None:
    """Inside a multi-task submitit job, export RANK/WORLD_SIZE/MASTER_* for torch.distributed."""
    try:
        env = submitit.JobEnvironment()
    except RuntimeError:  # not inside a submitit job (debug executor, direct call)
        return
    if env.num_tasks > 1 and "WORLD_SIZE" not in os.environ:
        submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False)


@dataclass(frozen=True)
class LaunchOptions:
    executor: str = "local"
    parallel: int = 1  # local: jobs running at once
    runs_per_job: int | None = None  # None: slurm 1, local ceil(runs / parallel), debug all
    tasks_per_job: int = 1  # processes per job: DDP when > 1
    gpus_per_job: int = 0  # local: GPUs per job (submitit sets CUDA_VISIBLE_DEVICES)
    timeout_min: int = 7 * 24 * 60
    slurm_params: dict[str, Any] = field(default_factory=dict)
    force: bool = False
    poll_s: float = 1.0

    def __post_init__(self) -> None:
        if self.executor not in EXECUTORS:
            raise ValueError(f"--executor {self.executor!r}: choose one of {EXECUTORS}")


@dataclass
class JobReport:
    job_id: str
    runs: list[str]
    ok: bool
    error: str = ""
    stdout: Path | None = None
    stderr: Path | None = None


def deal_runs(runs: Sequence[RunConfig], jobs: int) -> list[list[RunConfig]]:
    """Round-robin so every job gets a similar mix of methods (their costs differ widely)."""
    jobs = max(1, min(jobs, len(runs)))
    return [list(runs[i::jobs]) for i in range(jobs)]


def chunk_runs(runs: Sequence[RunConfig], options: LaunchOptions) -> list[list[RunConfig]]:
    if options.runs_per_job is not None:
        size = max(1, options.runs_per_job)
        return [list(runs[i:i + size]) for i in range(0, len(runs), size)]
    if options.executor == "slurm":
        return [[cfg] for cfg in runs]
    if options.executor == "debug":
        return [list(runs)]
    return deal_runs(runs, options.parallel)


def job_folder(base: Path, executor: str) -> Path:
    """One folder per job on SLURM, where sbatch creates it before the job starts. Locally, one flat
    folder: submitit's local controller creates its folder by the literal path and opens
    ``<pid>_0_log.out`` in it at once, while the ``<pid>/`` folder appears only when the submitting
    process moves the pickle there, so a fast controller found no folder and the job died unlogged."""
    return base / "%j" if executor == "slurm" else base


def make_executor(options: LaunchOptions, folder: Path) -> submitit.Executor:
    if options.executor == "debug":
        return submitit.DebugExecutor(folder)
    if options.executor == "local":
        executor = submitit.LocalExecutor(folder)
        executor.update_parameters(timeout_min=options.timeout_min, tasks_per_node=options.tasks_per_job,
                                   gpus_per_node=options.gpus_per_job)
        return executor
    executor = submitit.AutoExecutor(folder, cluster="slurm")
    executor.update_parameters(**options.slurm_params)
    return executor


def launch(runs: Sequence[RunConfig], results_dir: Path, execution: Execution,
           options: LaunchOptions) -> list[JobReport]:
    """Submit the runs, wait for every job with a progress bar over runs, report each job."""
    if not runs:
        return []
    jobs_root = Path(results_dir) / "work" / SUBMITIT_SUBDIR
    executor = make_executor(options, job_folder(jobs_root, options.executor))
    chunks = chunk_runs(runs, options)
    job_fns = [RunJob(chunk, str(results_dir), execution, options.force) for chunk in chunks]
    if options.executor == "debug":
        jobs = [executor.submit(fn) for fn in job_fns]
    else:
        try:
            # submitit echoes sbatch's stderr before raising; the error below says it once, in one line
            with contextlib.redirect_stderr(io.StringIO()), executor.batch():
                jobs = [executor.submit(fn) for fn in job_fns]
        except submitit.core.utils.FailedJobError as err:  # sbatch exited non-zero: nothing was queued
            raise SubmissionRefused(f"the {options.executor} scheduler refused the {len(job_fns)} job(s): "
                                    f"{' '.join(str(err).split())}; fix the SLURM profile (slurm/README.md)") from None
    print(f"submitted {len(runs)} runs as {len(jobs)} {options.executor} job(s); job logs under "
          f"{jobs_root}, run logs under {Path(results_dir) / 'work'}/<run>/{LOG_NAME}", flush=True)
    return wait(jobs, chunks, results_dir, options)


def wait(jobs: list, chunks: list[list[RunConfig]], results_dir: Path, options: LaunchOptions) -> list[JobReport]:
    """Poll until every job is done, advancing a bar as run records appear."""
    total = sum(len(c) for c in chunks)
    pending = {cfg.hash() for chunk in chunks for cfg in chunk}
    reports: dict[int, JobReport] = {}
    with progress_bar(total=total, desc="runs", unit="run") as bar:
        while len(reports) < len(jobs):
            for i, job in enumerate(jobs):
                if i in reports:
                    continue
                if options.executor == "debug" or job.done():
                    reports[i] = _report(job, chunks[i])
                    if not reports[i].ok:
                        bar.write(_describe_failure(reports[i]))
            done = {h for h in pending if find_record(results_dir, h)}
            bar.update(len(done))
            pending -= done
            if len(reports) < len(jobs):
                time.sleep(options.poll_s)
    return [reports[i] for i in range(len(jobs))]


def _report(job, chunk: list[RunConfig]) -> JobReport:
    names = [cfg.name for cfg in chunk]
    paths = getattr(job, "paths", None)
    stdout = getattr(paths, "stdout", None)
    stderr = getattr(paths, "stderr", None)
    try:
        job.results()  # every task of the job (several for a DDP job)
    except Exception as err:  # submitit wraps remote failures (FailedJobError, UncompletedJobError)
        return JobReport(str(job.job_id), names, ok=False, error=str(err).strip(), stdout=stdout, stderr=stderr)
    return JobReport(str(job.job_id), names, ok=True, stdout=stdout, stderr=stderr)


def _describe_failure(report: JobReport) -> str:
    lines = [f"job {report.job_id} FAILED ({len(report.runs)} run(s))"]
    if report.stderr is not None:
        lines.append(f"  job log: {report.stderr}")
    last = report.error.strip().splitlines()
    lines.extend("  " + line for line in last[-12:])
    return "\n".join(lines)
