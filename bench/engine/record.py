"""The run record a finished run leaves: metrics, counts and provenance."""
from __future__ import annotations

import datetime as _dt

import torch

from bench.config import RunConfig
from bench.counting import Counts
from bench.engine.batching import StepPlan
from bench.engine.checkpoint import Progress
from bench.engine.distributed import DistContext
from bench.store import provenance
from bench.store.records import RunRecord


def make_record(cfg: RunConfig, metrics: dict, counts: Counts, train_set, plan: StepPlan,
                 amp_dtype, ctx: DistContext, broken: set, progress: Progress, *, wall_time: float,
                 memory: int, memory_kind: str, steps_per_epoch: int, predictions: dict | None,
                 fast_paths: list[str], guard: dict, eval_time: float | None = None,
                 device_transforms: bool = False, diverged: str | None = None,
                 fallback_ids: list[str] = (), workers: int = 0) -> RunRecord:
    """``predictions`` is what ``bench.store.predictions.write_predictions`` returned for this run
    (None for a diverged trial: it has no outputs); ``fast_paths`` the function-preserving changes
    applied to its model (bench.engine.build); ``diverged`` why a tuning trial stopped training;
    ``fallback_ids`` the videos (``split:id``) the fallback reader read, which are not broken;
    ``workers`` the loader workers of each process."""
    commit, dirty = provenance.git_state()
    precision = "fp32" if amp_dtype is None else {torch.float16: "fp16", torch.bfloat16: "bf16"}[amp_dtype]
    return RunRecord(
        method=cfg.method, dataset=cfg.dataset, backbone=cfg.backbone, recipe=cfg.recipe.name,
        seed=cfg.seed, config_hash=cfg.hash(), config=cfg.to_dict(),
        top1=float(metrics["top1"]), top5=float(metrics["top5"]),
        params_trainable=counts.params_trainable, params_total=counts.params_total,
        gflops_per_view=counts.gflops_per_view, views=cfg.recipe.clip.views,
        wall_time_s=round(wall_time, 3),
        throughput_clips_per_s=round(progress.clips_seen / progress.train_time_s, 3) if progress.train_time_s else 0.0,
        peak_memory_bytes=memory, broken_videos=len(broken),
        git_commit=commit, git_dirty=dirty, packages=provenance.package_versions(),
        hardware=provenance.hardware(ctx.device, ctx.world_size), fingerprint=provenance.fingerprint(ctx.device),
        created_at=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        per_class_top1=metrics["per_class_top1"], predictions=predictions, curves=progress.curves,
        extra={
            "effective_precision": precision, "peak_lr": cfg.peak_lr, "steps_per_epoch": steps_per_epoch,
            "eval_only": cfg.eval_only, "init": cfg.init,
            "world_size": ctx.world_size, "grad_accumulation": plan.accumulation,
            "micro_batch": plan.micro_batch, "train_clips": len(train_set), "val_videos": metrics["videos"],
            "val_skipped_broken": metrics["skipped"], "val_skipped_ids": metrics["skipped_ids"],
            "reader_fallbacks": len(fallback_ids), "reader_fallback_ids": list(fallback_ids),
            "train_time_s": round(progress.train_time_s, 3),
            "peak_memory_kind": memory_kind, "attempts": progress.attempts,
            "fvcore_unsupported_ops": counts.unsupported_ops, "fast_paths": fast_paths, "frozen_guard": guard,
            **({} if eval_time is None else {"eval_time_s": round(eval_time, 3)}),
            "transforms": "device" if device_transforms else "loader workers",
            **feed_fields(progress, ctx.device, train_set, workers),
            **({} if diverged is None else {"diverged": diverged}),
        },
    )


def feed_fields(progress: Progress, device: torch.device, train_set, workers: int) -> dict:
    """Whether the run was data-bound (``bench.engine.feed`` defines the fractions; of rank 0, over
    its ``train_time_s``; None when nothing was trained) and what read its frames."""
    def share(seconds: float) -> float | None:
        return round(seconds / progress.train_time_s, 4) if progress.train_time_s else None

    return {"data_wait_fraction": share(progress.data_wait_s), "host_data_wait_fraction": share(progress.host_wait_s),
            "gpu_busy_fraction": share(progress.gpu_busy_s) if device.type == "cuda" else None,
            "decoder": train_set.decoder, "fallback_decoder": train_set.fallback_decoder, "loader_workers": workers}
