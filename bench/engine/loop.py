"""The training loop: one matched run from config to record.

Everything that could make two methods' runs differ other than the method is fixed here: the same
sample order, augmentation draws and schedule for every method (all derived from the seed), the same
optimiser and evaluation. A run checkpoints after every epoch and resumes from the last checkpoint
on restart, ending with the same metrics as an uninterrupted run.
"""
from __future__ import annotations

import dataclasses
import logging
import math
import resource
import time
from contextlib import nullcontext
from functools import partial
from pathlib import Path
from typing import Callable

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from bench.config import RunConfig
from bench.data.device_batches import DeviceBatches
from bench.engine.batching import StepPlan, fallback_sources, replaced_indices, train_batches
from bench.engine.build import build_run_dataset, prepare_model
from bench.engine.checkpoint import CHECKPOINT_NAME, Progress, load_checkpoint, save_checkpoint
from bench.engine.curves import CurveLogger, evaluation_epochs, log_interval, tensorboard_writer
from bench.engine.distributed import DistContext, all_reduce, all_union, init_distributed
from bench.engine.evaluate import diverged_metrics, evaluate
from bench.engine.execution import Execution
from bench.engine.feed import FeedMeter
from bench.engine.guard import FrozenGuard
from bench.engine.optim import Optimisation, autocast_dtype
from bench.engine.preemption import STOPS
from bench.engine.record import make_record
from bench.engine.seeding import loader_generator, seed_everything
from bench.progress import progress_bar
from bench.store.curves import empty_curves
from bench.store.predictions import write_predictions
from bench.store.records import RunRecord, write_record

log = logging.getLogger(__name__)
WORK_SUBDIR = "work"
LOG_NAME = "run.log"


def work_dir(results_dir: Path | str, cfg: RunConfig) -> Path:
    """Per-run log and checkpoint folder (not part of the committed results)."""
    return Path(results_dir) / WORK_SUBDIR / cfg.name


StepCallback = Callable[[int], None]


def _run_logger(path: Path, enabled: bool) -> tuple[logging.Logger, logging.Handler | None]:
    logger = logging.getLogger(f"bench.run.{path.parent.name}")
    logger.setLevel(logging.INFO)
    if not enabled:
        return logger, None
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logger.addHandler(handler)
    return logger, handler


def peak_memory_bytes(device: torch.device) -> tuple[int, str]:
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device)), "cuda_max_allocated"
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024, "process_max_rss"


def execute_run(cfg: RunConfig, results_dir: Path | str, execution: Execution = Execution(),
                step_callback: StepCallback | None = None) -> RunRecord:
    """Train and evaluate one run, resuming from its checkpoint if one exists; write its record.

    ``step_callback(global_step)`` is called after every optimizer step (progress hooks, tests that
    interrupt a run).
    """
    started = time.perf_counter()
    threads = execution.torch_threads()
    if threads:
        torch.set_num_threads(threads)
    ctx = init_distributed(execution)
    folder = work_dir(results_dir, cfg)
    if ctx.is_main:
        folder.mkdir(parents=True, exist_ok=True)
    if ctx.world_size > 1:
        dist.barrier()
    logger, handler = _run_logger(folder / LOG_NAME, ctx.is_main)
    try:
        return _execute(cfg, Path(results_dir), folder, execution, ctx, logger, started, step_callback)
    finally:
        if handler is not None:
            logger.removeHandler(handler)
            handler.close()


def _execute(cfg: RunConfig, results_dir: Path, folder: Path, execution: Execution, ctx: DistContext,
             logger: logging.Logger, started: float, step_callback: StepCallback | None) -> RunRecord:
    recipe, device = cfg.recipe, ctx.device
    logger.info("run %s (rank %d of %d, %s): %s", cfg.name, ctx.rank, ctx.world_size, device, cfg.to_dict())
    seed_everything(cfg.seed)
    on_device = execution.transforms_on_device(device, cfg.dataset)
    train_set = build_run_dataset(cfg, "train", train=True, device_transforms=on_device)
    val_set = build_run_dataset(cfg, "val", train=False, device_transforms=on_device)
    amp_dtype = autocast_dtype(cfg.precision, device)
    model, counts, fast_paths = prepare_model(cfg, train_set.num_classes, ctx, amp_dtype)
    plan = StepPlan.make(recipe.batch_size, ctx.world_size, execution.batch_per_device)
    steps_per_epoch = len(train_set) // recipe.batch_size
    if steps_per_epoch == 0 and not cfg.eval_only:
        raise ValueError(f"{cfg.dataset}: {len(train_set)} training clips is fewer than one global batch "
                         f"({recipe.batch_size}); lower --batch-size")
    opt = Optimisation.make(model, cfg, steps_per_epoch, amp_dtype, device)
    guard = FrozenGuard(model, opt.trainable)
    ddp = (nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
           if dist.is_initialized() else model)

    checkpoint_path = folder / CHECKPOINT_NAME
    progress = Progress()
    state = load_checkpoint(checkpoint_path, cfg.hash())
    if state is not None:
        opt.load_state_dict(state)
        if "guard" in state:  # checkpoints from before the guard start its record afresh
            guard.resume(state["guard"])
        progress = Progress(**{**state["progress"], "broken": set(state["progress"]["broken"]),
                               "fallbacks": set(state["progress"].get("fallbacks", ()))})
        progress.attempts += 1
        logger.info("resumed from %s at step %d (epoch %d, step %d of it; attempt %d)", checkpoint_path,
                    state["step"], progress.epoch + 1, progress.step_in_epoch, progress.attempts)
    logger.info("steps/epoch %d, global batch %d = %d ranks x %d accumulation x %d clips, peak lr %.3g",
                steps_per_epoch, plan.global_batch, plan.world_size, plan.accumulation, plan.micro_batch,
                cfg.peak_lr)

    loader_args = dict(num_workers=execution.num_workers, pin_memory=device.type == "cuda",
                       worker_init_fn=loader_worker_init())
    datasets = {"train": train_set, "val": val_set}

    def note_fallbacks(split: str, sources) -> None:
        """Name in the run log, once, each video the fallback reader read (a reader defect)."""
        for source in sorted(set(sources) - {i for kind, i in progress.fallbacks if kind == split}):
            progress.fallbacks.add((split, source))
            logger.warning("reader fallback: %s video %s was read by the other reader after the loader's failed "
                           "on it; not a broken video, counted in the record's reader_fallbacks", split,
                           datasets[split].source_list[source].path)

    def save(reason: str = "end of epoch") -> None:
        """The checkpoint of the last finished step (rank 0; DDP keeps every rank's weights equal)."""
        if not ctx.is_main:
            return
        elapsed = progress.earlier_wall_time_s + time.perf_counter() - started  # earlier, for a resumed attempt
        step = progress.epoch * steps_per_epoch + progress.step_in_epoch
        save_checkpoint(checkpoint_path, {"config_hash": cfg.hash(), "step": step, **opt.state_dict(),
                                          "guard": guard.state_dict(),
                                          "progress": {**dataclasses.asdict(progress), "earlier_wall_time_s": elapsed}})
        logger.info("checkpoint at step %d (epoch %d, step %d of %d): %s", step, progress.epoch + 1,
                    progress.step_in_epoch, steps_per_epoch, reason)

    if not progress.curves:
        progress.curves = empty_curves(log_interval(max(1, steps_per_epoch), recipe.epochs, execution.log_every),
                                       steps_per_epoch)
    resumed_at = progress.epoch * steps_per_epoch + progress.step_in_epoch
    writer = (tensorboard_writer(Path(execution.tensorboard_dir) / cfg.name, resumed_at)
              if execution.tensorboard_dir and ctx.is_main else None)
    curves = CurveLogger(progress.curves, progress.curve_interval, plan.global_batch, ctx, writer)
    evaluate_after = evaluation_epochs(recipe.epochs, execution.evaluations)

    eval_time = [0.0]

    def run_evaluation():  # every evaluation is a point of the top-1 curve; the record keeps the last
        began = time.perf_counter()
        result = evaluate(ddp, val_set, recipe.clip.views, plan.micro_batch, amp_dtype, ctx, loader_args)
        eval_time[0] = time.perf_counter() - began
        note_fallbacks("val", result.fallback_sources)
        curves.evaluation(progress.epoch * steps_per_epoch, result.metrics())
        return result

    bar = progress_bar(total=0 if cfg.eval_only else recipe.epochs * steps_per_epoch, initial=resumed_at,
                       desc=cfg.name[:60], disable=not (ctx.is_main and execution.progress))
    diverged = None
    try:
        try:
            for epoch in range(progress.epoch, 0 if cfg.eval_only else recipe.epochs):
                _set_epoch(train_set, epoch)
                batches = train_batches(len(train_set), plan, ctx.rank, cfg.seed, epoch)
                loader = DeviceBatches(torch.utils.data.DataLoader(
                    train_set, batch_sampler=batches[progress.step_in_epoch * plan.accumulation:], **loader_args,
                    collate_fn=train_set.collate_fn, generator=loader_generator(cfg.seed, epoch)), recipe.clip, True,
                    device)
                curves.start_epoch(epoch)
                _train_epoch(ddp, loader, opt, plan, amp_dtype, device, bar, step_callback, progress,
                             epoch * steps_per_epoch, save, curves, guard,
                             partial(note_fallbacks, "train"))
                mean_loss = (all_reduce(torch.tensor([progress.epoch_loss_sum]), ctx).item()
                             / (steps_per_epoch * ctx.world_size))
                progress.finish_epoch()
                logger.info("epoch %d/%d: train loss %.4f, lr %.3g, %.1f s in training so far, %.0f%% of it "
                            "waiting for data", epoch + 1, recipe.epochs, mean_loss, opt.scheduler.get_last_lr()[0],
                            progress.train_time_s, 100 * progress.data_wait_s / max(progress.train_time_s, 1e-9))
                if progress.epoch in evaluate_after and progress.epoch < recipe.epochs:
                    logger.info("epoch %d: top-1 %.2f", progress.epoch, run_evaluation().metrics()["top1"])
                save()
        except FloatingPointError as err:
            if cfg.trial is None:  # an ordinary run asked for an lr that diverges: the error says so
                raise
            diverged = str(err)  # a grid point too high for the method: the trial's outcome, recorded
            logger.warning("trial diverged, scored as no video right: %s", diverged)
        bar.close()
        guarded = guard.check(trained=progress.clips_seen > 0)
        evaluation = None if diverged else run_evaluation()
    finally:
        curves.close()
    if evaluation is None:
        metrics, val_broken = diverged_metrics(val_set), set()
    else:
        metrics, val_broken = evaluation.metrics(), evaluation.broken
        metrics["skipped_ids"] = sorted(val_set.video_ids[i] for i in val_broken)
    broken = all_union(progress.broken | {("val", i) for i in val_broken}, ctx)
    fallbacks = all_union(progress.fallbacks, ctx)
    for split in datasets:  # what other ranks met, named here too
        note_fallbacks(split, [i for kind, i in fallbacks if kind == split])
    fallback_ids = sorted(f"{kind}:{datasets[kind].video_ids[i]}" for kind, i in fallbacks)
    memory, memory_kind = peak_memory_bytes(device)
    if ctx.world_size > 1:
        memory = int(all_reduce(torch.tensor([memory], dtype=torch.float64), ctx, dist.ReduceOp.MAX).item())
    logger.info("top-1 %.2f top-5 %.2f", metrics["top1"], metrics["top5"])
    if not ctx.is_main:
        return None
    predictions = (None if evaluation is None else
                   write_predictions(results_dir, cfg.name, evaluation.predictions(val_set), cfg.hash()))
    record = make_record(cfg, metrics, counts, train_set, plan, amp_dtype, ctx, broken, progress,
                          wall_time=progress.earlier_wall_time_s + time.perf_counter() - started,
                          memory=memory, memory_kind=memory_kind, steps_per_epoch=steps_per_epoch,
                          predictions=predictions, fast_paths=fast_paths, guard=guarded,
                          eval_time=eval_time[0], device_transforms=on_device, diverged=diverged,
                          fallback_ids=fallback_ids, workers=execution.num_workers)
    path = write_record(results_dir, record)  # last: the record is what marks the run finished
    logger.info("record written to %s", path)
    if not execution.keep_checkpoint:
        checkpoint_path.unlink(missing_ok=True)
    return record


def loader_worker_init():
    try:
        from bench.data import worker_init_fn
    except ImportError:
        return None
    return worker_init_fn


def _set_epoch(dataset, epoch: int) -> None:
    if hasattr(dataset, "set_epoch"):
        dataset.set_epoch(epoch)


def _train_epoch(model, loader, opt: Optimisation, plan: StepPlan, amp_dtype, device: torch.device,
                 bar, step_callback: StepCallback | None, progress: Progress, epoch_start_step: int,
                 save: Callable[[], None], curves: CurveLogger, guard: FrozenGuard,
                 note_fallbacks: Callable[[set], None]) -> None:
    """The rest of an epoch (all of it unless resumed mid-epoch); ``progress`` advances at every
    optimizer step, where a pending stop request is honoured (bench.engine.preemption), and the
    videos the fallback reader read are noted (``note_fallbacks``).

    The next batch is fetched and staged on the device (``DeviceBatches``) as soon as a micro-batch's
    backward is queued, before its loss is read back, so the host prepares it while the GPU computes.
    How long the computation waited for it is measured alongside (``bench.engine.feed``).
    """
    model.train()
    micro_batches = iter(loader)
    meter = FeedMeter(device)
    remaining = len(loader) // plan.accumulation * plan.accumulation
    upcoming = next(micro_batches) if remaining else None
    timer = time.perf_counter()
    try:
        for _ in range(len(loader) // plan.accumulation):
            meter.step_began()
            opt.optimizer.zero_grad(set_to_none=True)
            step_loss, broken, fallbacks = 0.0, set(), set()
            for micro in range(plan.accumulation):
                batch, remaining = upcoming, remaining - 1
                broken.update(replaced_indices(batch))
                fallbacks.update(fallback_sources(batch))
                sync = micro == plan.accumulation - 1 or not hasattr(model, "no_sync")
                with (nullcontext() if sync else model.no_sync()):
                    with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                        logits = model(batch["video"].to(device, non_blocking=True))
                        loss = F.cross_entropy(logits.float(), batch["label"].to(device)) / plan.accumulation
                    opt.scaler.scale(loss).backward()
                upcoming = meter.fetch(micro_batches) if remaining else None
                step_loss += loss.item()
            guard.watch()
            lr = opt.scheduler.get_last_lr()[0]  # the lr this step applies
            opt.scaler.step(opt.optimizer)
            opt.scaler.update()
            opt.scheduler.step()
            meter.step_ended()
            progress.step_in_epoch += 1
            progress.epoch_loss_sum += step_loss
            progress.clips_seen += plan.global_batch
            progress.broken |= {("train", i) for i in broken}
            note_fallbacks(fallbacks)
            progress.train_time_s += time.perf_counter() - timer
            timer = time.perf_counter()
            step = epoch_start_step + progress.step_in_epoch
            bar.update(1)
            bar.set_postfix(loss=f"{step_loss:.3f}", refresh=False)
            if not math.isfinite(step_loss):
                raise FloatingPointError(f"training loss is {step_loss} at step {step}; lower the learning rate")
            curves.step(step, step_loss, lr)
            if step_callback is not None:
                step_callback(step)
            if STOPS.pending:
                progress.add_feed(meter.take())  # the checkpoint carries the whole run's figures
                STOPS.honour(lambda: save(f"stop requested by {STOPS.signal_name}"))
    finally:  # a diverged trial's record says how it was fed too
        progress.add_feed(meter.take())
