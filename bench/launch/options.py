"""Where and how the jobs of a grid run, from the command line: executor, parallelism, threads, workers."""
from __future__ import annotations

import argparse
import os
from typing import Any

from bench.config import BenchInputError
from bench.engine.curves import TensorBoardMissing, require_tensorboard
from bench.engine.execution import Execution
from bench.launch.submit import LaunchOptions


def launch_options(args: argparse.Namespace) -> tuple[LaunchOptions, Execution]:
    """Where and how the jobs run: SLURM from the profile; locally one job per core on CPU (one
    torch thread each) or one job at a time over all GPUs (DDP). The device is decided here, at
    planning time, because a run's precision (part of its identity) follows from it."""
    import torch
    cores = os.cpu_count() or 1
    gpus = torch.cuda.device_count()
    slurm_params: dict[str, Any] = {}
    if args.executor == "slurm":
        if not args.slurm_profile:
            raise BenchInputError("--executor slurm needs --slurm-profile (a name under slurm/profiles/ or a YAML file)")
        from bench.launch.slurm_profile import load_profile
        profile = load_profile(args.slurm_profile)
        slurm_params = profile.to_submitit_params()
        tasks, threads, workers = profile.tasks * profile.nodes, None, max(0, profile.cpus_per_task - 1)
        device = profile.device_type
    elif args.slurm_profile:
        raise BenchInputError("--slurm-profile only applies to --executor slurm")
    elif gpus:
        if args.gpus is not None and not 1 <= args.gpus <= gpus:
            raise BenchInputError(f"--gpus {args.gpus}: this machine has {gpus} GPU(s)")
        tasks, threads, workers = args.gpus or gpus, None, max(0, cores // (args.gpus or gpus) - 1)
        device = "cuda"
    else:
        if args.gpus:
            raise BenchInputError(f"--gpus {args.gpus}: this machine has no GPU")
        tasks, threads, workers, device = 1, None, 0, "cpu"
    parallel = args.parallel or (1 if gpus else cores)
    if parallel < 1 or (args.runs_per_job is not None and args.runs_per_job < 1):
        raise BenchInputError("--parallel and --runs-per-job must be >= 1")
    if not gpus and args.executor != "slurm":
        threads = max(1, cores // parallel)  # CPU jobs side by side: split the cores, do not oversubscribe
    options = LaunchOptions(executor=args.executor, parallel=parallel, runs_per_job=args.runs_per_job,
                            tasks_per_job=tasks, gpus_per_job=tasks if gpus and args.executor == "local" else 0,
                            slurm_params=slurm_params, force=args.force)
    execution = Execution(device=device, batch_per_device=args.batch_per_device, threads=threads,
                          num_workers=args.workers if args.workers is not None else workers,
                          progress=args.executor == "debug" or (args.executor == "local" and parallel == 1),
                          **curve_options(args))
    return options, execution


def curve_options(args: argparse.Namespace) -> dict[str, Any]:
    """What the runs log as they train; a missing optional TensorBoard is a usage error, caught here
    rather than in every job."""
    if args.log_every is not None and args.log_every < 1:
        raise BenchInputError(f"--log-every {args.log_every}: must be >= 1 step")
    if args.evaluations < 1:
        raise BenchInputError(f"--evaluations {args.evaluations}: a run needs at least its final evaluation")
    if args.tensorboard is not None:
        try:
            require_tensorboard()
        except TensorBoardMissing as err:
            raise BenchInputError(str(err)) from err
    return {"log_every": args.log_every, "evaluations": args.evaluations,
            "tensorboard_dir": None if args.tensorboard is None else str(args.tensorboard.resolve())}
