"""The training and evaluation engine: one matched run from config to record.

Everything that could make two methods' runs differ other than the method is fixed here: the same
sample order, augmentation draws and schedule for every method (all derived from the seed), the same
optimiser and evaluation. A run checkpoints after every epoch and resumes from the last checkpoint
on restart, ending with the same metrics as an uninterrupted run.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import logging
import math
import os
import random
import resource
import time
from contextlib import nullcontext
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from bench import provenance
from bench.config import RANDOM_WEIGHTS, RunConfig
from bench.counting import Counts, count_model
from bench.records import RunRecord, write_record
from methods import fast

log = logging.getLogger(__name__)

WORK_SUBDIR = "work"
CHECKPOINT_NAME = "checkpoint.pt"
LOG_NAME = "run.log"


@dataclass(frozen=True)
class Execution:
    """How a run executes; never what it computes (up to float summation order across devices)."""

    device: str = "auto"  # "auto" | "cpu" | "cuda"
    batch_per_device: int | None = None  # micro-batch; None: global batch / world size (no accumulation)
    num_workers: int = 0
    threads: int | None = None  # torch CPU threads in this process
    progress: bool = True
    keep_checkpoint: bool = False  # a finished run's checkpoint is deleted once its record is written


@dataclass(frozen=True)
class DistContext:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def work_dir(results_dir: Path | str, cfg: RunConfig) -> Path:
    """Per-run log and checkpoint folder (not part of the committed results)."""
    return Path(results_dir) / WORK_SUBDIR / cfg.name


# -- Distributed set-up ---------------------------------------------------------------------------

def init_distributed(execution: Execution) -> DistContext:
    """Join the process group described by the environment (torchrun or submitit exports
    RANK/WORLD_SIZE/LOCAL_RANK/MASTER_ADDR/MASTER_PORT); a single process needs none of it."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = execution.device == "cuda" or (execution.device == "auto" and torch.cuda.is_available())
    if use_cuda and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' was asked for but CUDA is not available on this machine")
    device = torch.device("cuda", local_rank % torch.cuda.device_count()) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(device)
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo", init_method="env://",
                                rank=rank, world_size=world_size,
                                timeout=_dt.timedelta(minutes=30))
    return DistContext(rank, world_size, local_rank, device)


def all_reduce(tensor: torch.Tensor, ctx: DistContext, op=None) -> torch.Tensor:
    if ctx.world_size > 1:
        backend_device = ctx.device if ctx.device.type == "cuda" else torch.device("cpu")
        moved = tensor.to(backend_device)
        dist.all_reduce(moved, op=op or dist.ReduceOp.SUM)
        return moved.to(tensor.device)
    return tensor


def all_union(items: set, ctx: DistContext) -> set:
    if ctx.world_size == 1:
        return items
    gathered: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(gathered, items)
    return set().union(*gathered)


# -- Seeding and sample order ---------------------------------------------------------------------

def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def epoch_order(num_samples: int, seed: int, epoch: int) -> torch.Tensor:
    """The epoch's shuffled sample order: a function of (seed, epoch) only, so every method, world
    size and resumed run sees the same samples in the same optimizer steps."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(num_samples, generator=generator)


def loader_generator(seed: int, epoch: int) -> torch.Generator:
    """Seeds the loader's workers from (seed, epoch) alone, and keeps creating a loader from drawing
    on the global RNG (which dropout uses)."""
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch + 7_919)


@dataclass(frozen=True)
class StepPlan:
    """How a global batch is split: over ranks, then into gradient-accumulation micro-batches."""

    global_batch: int
    world_size: int
    micro_batch: int

    @property
    def per_rank(self) -> int:
        return self.global_batch // self.world_size

    @property
    def accumulation(self) -> int:
        return self.per_rank // self.micro_batch

    @classmethod
    def make(cls, global_batch: int, world_size: int, batch_per_device: int | None) -> "StepPlan":
        if global_batch % world_size:
            raise ValueError(f"global batch {global_batch} does not split over {world_size} processes; "
                             "choose a batch size that is a multiple of the number of GPUs")
        per_rank = global_batch // world_size
        micro = per_rank if batch_per_device is None else min(batch_per_device, per_rank)
        while per_rank % micro:  # largest micro-batch <= the asked one that divides the rank's share
            micro -= 1
        return cls(global_batch, world_size, micro)


def train_batches(num_samples: int, plan: StepPlan, rank: int, seed: int, epoch: int) -> list[list[int]]:
    """This rank's micro-batches for one epoch, ``plan.accumulation`` per optimizer step; the
    incomplete last global batch is dropped so every step has the same size."""
    order = epoch_order(num_samples, seed, epoch).tolist()
    batches = []
    for step in range(num_samples // plan.global_batch):
        mine = order[step * plan.global_batch + rank * plan.per_rank:][:plan.per_rank]
        batches.extend(mine[i:i + plan.micro_batch] for i in range(0, plan.per_rank, plan.micro_batch))
    return batches


# -- Optimisation ---------------------------------------------------------------------------------

class WarmupCosine:
    """lr factor per iteration: linear from 0 over the warmup, then half a cosine down to 0.

    A callable object (not a lambda) so LambdaLR can save it in its state dict.
    """

    def __init__(self, warmup_steps: int, total_steps: int):
        self.warmup_steps, self.total_steps = warmup_steps, total_steps

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return step / self.warmup_steps
        progress = (step - self.warmup_steps) / max(1, self.total_steps - self.warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


def make_optimizer(named: list[tuple[str, nn.Parameter]], lr: float, weight_decay: float,
                   betas: tuple[float, float]) -> torch.optim.AdamW:
    """AdamW with no weight decay on biases (the reference's rule: parameter names ending in 'bias')."""
    decay = [p for n, p in named if not n.endswith("bias")]
    no_decay = [p for n, p in named if n.endswith("bias")]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    fused = all(p.is_cuda for p in decay + no_decay)  # one kernel for every parameter on GPU
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=lr, betas=betas, fused=fused or None)


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """None means fp32 (no autocast). CPU runs always use fp32."""
    if device.type != "cuda" or precision == "fp32":
        return None
    return torch.float16 if precision == "fp16" else torch.bfloat16


# -- Building ---------------------------------------------------------------------------------------

def resolve_weights(weights: str | None) -> str | None:
    """A ``pretrain:`` reference becomes the cached file (pre-training it on first use)."""
    if weights is not None and weights.startswith("pretrain:"):
        from bench import pretrain
        return str(pretrain.ensure_pretrained(weights))
    return weights


def build_run_model(cfg: RunConfig, num_classes: int) -> nn.Module:
    from methods import build_model
    random_init = cfg.weights == RANDOM_WEIGHTS
    model = build_model(cfg.method, cfg.backbone, num_classes=num_classes,
                        num_frames=cfg.recipe.clip.num_frames,
                        weights=None if random_init else resolve_weights(cfg.weights),
                        random_init=random_init, method_options=dict(cfg.method_options))
    model.head.dropout.p = cfg.recipe.head_dropout
    return model


def build_run_dataset(cfg: RunConfig, split: str, train: bool):
    from bench.data import build_dataset
    return build_dataset(cfg.dataset, split, cfg.recipe.clip, train=train, root=cfg.data_root, seed=cfg.seed,
                         synth=cfg.synth)


# -- Checkpoints ----------------------------------------------------------------------------------

def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path, config_hash: str) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    state = torch.load(path, map_location="cpu", weights_only=False)
    if state.get("config_hash") != config_hash:
        log.warning("ignoring %s: it belongs to config %s, not %s", path, state.get("config_hash"), config_hash)
        return None
    return state


# -- The run --------------------------------------------------------------------------------------

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
    if execution.threads:
        torch.set_num_threads(execution.threads)
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


@dataclass
class Progress:
    """Where a run stands, carried by its checkpoint so a resumed run reports whole-run numbers."""

    epoch: int = 0
    train_time_s: float = 0.0
    clips_seen: int = 0
    broken: set = field(default_factory=set)  # ("train" | "val", sample index) of replaced videos
    attempts: int = 1
    earlier_wall_time_s: float = 0.0


@dataclass
class Optimisation:
    """Everything a checkpoint must restore for the rest of the run to be identical."""

    trainable: list[tuple[str, nn.Parameter]]
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler

    @classmethod
    def make(cls, model: nn.Module, cfg: RunConfig, steps_per_epoch: int, amp_dtype, device: torch.device):
        recipe = cfg.recipe
        trainable = model.trainable_named_parameters()
        optimizer = make_optimizer(trainable, cfg.peak_lr, recipe.weight_decay, recipe.betas)
        schedule = WarmupCosine(round(recipe.warmup_epochs * steps_per_epoch), recipe.epochs * steps_per_epoch)
        return cls(trainable, optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, schedule),
                   torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16))

    def state_dict(self) -> dict[str, Any]:
        return {"trainable": {n: p.detach().cpu() for n, p in self.trainable},
                "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict(), "rng": rng_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        params = dict(self.trainable)
        with torch.no_grad():
            for name, value in state["trainable"].items():
                params[name].copy_(value)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        set_rng_state(state["rng"])


def prepare_model(cfg: RunConfig, num_classes: int, ctx: DistContext, amp_dtype) -> tuple[nn.Module, Counts | None]:
    """Build, count (before any change, on rank 0), move, and on GPU apply the function-preserving fast
    paths of ``methods.fast`` (results/perf/NOTES.md measures each); hold frozen weights in half
    precision if the recipe asks (trainable weights stay fp32 under autocast)."""
    model = build_run_model(cfg, num_classes)
    counts = count_model(model, cfg.recipe.clip.num_frames, cfg.recipe.clip.input_size) if ctx.is_main else None
    model.to(ctx.device)
    if ctx.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(ctx.device)
        fast.fuse_activations(model)
        fast.pack_attention_grads(model)
        fast.patch_embed_as_matmul(model)
    if cfg.recipe.half_frozen and amp_dtype is not None:
        fast.hold_frozen_in(model, amp_dtype)
    return model, counts


def _execute(cfg: RunConfig, results_dir: Path, folder: Path, execution: Execution, ctx: DistContext,
             logger: logging.Logger, started: float, step_callback: StepCallback | None) -> RunRecord:
    recipe, device = cfg.recipe, ctx.device
    logger.info("run %s (rank %d of %d, %s): %s", cfg.name, ctx.rank, ctx.world_size, device, cfg.to_dict())
    seed_everything(cfg.seed)
    train_set = build_run_dataset(cfg, "train", train=True)
    val_set = build_run_dataset(cfg, "val", train=False)
    amp_dtype = autocast_dtype(recipe.precision, device)
    model, counts = prepare_model(cfg, train_set.num_classes, ctx, amp_dtype)
    plan = StepPlan.make(recipe.batch_size, ctx.world_size, execution.batch_per_device)
    steps_per_epoch = len(train_set) // recipe.batch_size
    if steps_per_epoch == 0:
        raise ValueError(f"{cfg.dataset}: {len(train_set)} training clips is fewer than one global batch "
                         f"({recipe.batch_size}); lower --batch-size")
    opt = Optimisation.make(model, cfg, steps_per_epoch, amp_dtype, device)
    ddp = (nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
           if ctx.world_size > 1 else model)

    checkpoint_path = folder / CHECKPOINT_NAME
    progress = Progress()
    state = load_checkpoint(checkpoint_path, cfg.hash())
    if state is not None:
        opt.load_state_dict(state)
        progress = Progress(**{**state["progress"], "broken": set(state["progress"]["broken"])})
        progress.attempts += 1
        logger.info("resumed from %s at epoch %d (attempt %d)", checkpoint_path, progress.epoch, progress.attempts)
    logger.info("steps/epoch %d, global batch %d = %d ranks x %d accumulation x %d clips, peak lr %.3g",
                steps_per_epoch, plan.global_batch, plan.world_size, plan.accumulation, plan.micro_batch,
                cfg.peak_lr)

    loader_args = dict(num_workers=execution.num_workers, pin_memory=device.type == "cuda",
                       worker_init_fn=loader_worker_init())
    bar = tqdm(total=recipe.epochs * steps_per_epoch, initial=progress.epoch * steps_per_epoch,
               desc=cfg.name[:60], disable=not (ctx.is_main and execution.progress), dynamic_ncols=True,
               mininterval=1.0)
    for epoch in range(progress.epoch, recipe.epochs):
        _set_epoch(train_set, epoch)
        batches = train_batches(len(train_set), plan, ctx.rank, cfg.seed, epoch)
        loader = torch.utils.data.DataLoader(train_set, batch_sampler=batches, **loader_args,
                                             generator=loader_generator(cfg.seed, epoch))
        epoch_started = time.perf_counter()
        loss_sum, broken = _train_epoch(ddp, loader, opt, plan, amp_dtype, device, bar, step_callback,
                                        epoch * steps_per_epoch)
        progress.train_time_s += time.perf_counter() - epoch_started
        progress.clips_seen += steps_per_epoch * recipe.batch_size
        progress.broken |= {("train", i) for i in broken}
        progress.epoch = epoch + 1
        mean_loss = all_reduce(torch.tensor([loss_sum]), ctx).item() / (steps_per_epoch * ctx.world_size)
        logger.info("epoch %d/%d: train loss %.4f, lr %.3g, %.1f s in training so far", epoch + 1,
                    recipe.epochs, mean_loss, opt.scheduler.get_last_lr()[0], progress.train_time_s)
        if ctx.is_main:  # a resumed attempt counts this one's time as earlier wall time
            elapsed = progress.earlier_wall_time_s + time.perf_counter() - started
            save_checkpoint(checkpoint_path, {
                "config_hash": cfg.hash(), "step": progress.epoch * steps_per_epoch, **opt.state_dict(),
                "progress": {**dataclasses.asdict(progress), "earlier_wall_time_s": elapsed}})
    bar.close()

    metrics, broken_val = evaluate(ddp, val_set, recipe.clip.views, plan.micro_batch, amp_dtype, ctx, loader_args)
    broken = all_union(progress.broken | {("val", i) for i in broken_val}, ctx)
    memory, memory_kind = peak_memory_bytes(device)
    if ctx.world_size > 1:
        memory = int(all_reduce(torch.tensor([memory], dtype=torch.float64), ctx, dist.ReduceOp.MAX).item())
    logger.info("top-1 %.2f top-5 %.2f", metrics["top1"], metrics["top5"])
    if not ctx.is_main:
        return None
    record = make_record(cfg, metrics, counts, val_set, train_set, plan, amp_dtype, ctx, broken, progress,
                          wall_time=progress.earlier_wall_time_s + time.perf_counter() - started,
                          memory=memory, memory_kind=memory_kind, steps_per_epoch=steps_per_epoch)
    path = write_record(results_dir, record)
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
                 bar, step_callback: StepCallback | None, first_step: int) -> tuple[float, set[int]]:
    """One epoch; returns this rank's summed step losses and the indices of replaced (broken) samples."""
    model.train()
    loss_sum, broken, step = 0.0, set(), first_step
    micro_batches = iter(loader)
    for _ in range(len(loader) // plan.accumulation):
        opt.optimizer.zero_grad(set_to_none=True)
        step_loss = 0.0
        for micro in range(plan.accumulation):
            batch = next(micro_batches)
            broken.update(replaced_indices(batch))
            sync = micro == plan.accumulation - 1 or not hasattr(model, "no_sync")
            with (nullcontext() if sync else model.no_sync()):
                with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                    logits = model(batch["video"].to(device, non_blocking=True))
                    loss = F.cross_entropy(logits.float(), batch["label"].to(device)) / plan.accumulation
                opt.scaler.scale(loss).backward()
            step_loss += loss.item()
        opt.scaler.step(opt.optimizer)
        opt.scaler.update()
        opt.scheduler.step()
        step += 1
        loss_sum += step_loss
        bar.update(1)
        bar.set_postfix(loss=f"{step_loss:.3f}", refresh=False)
        if not math.isfinite(step_loss):
            raise FloatingPointError(f"training loss is {step_loss} at step {step}; lower the learning rate")
        if step_callback is not None:
            step_callback(step)
    return loss_sum, broken


def replaced_indices(batch: dict) -> Iterator[int]:
    flags = batch.get("replaced")
    if flags is None:
        return iter(())
    return (int(i) for i, r in zip(batch["index"], flags) if bool(r))


@torch.no_grad()
def evaluate(model, dataset, views: int, batch_clips: int, amp_dtype, ctx: DistContext,
             loader_args: dict) -> tuple[dict[str, Any], set[int]]:
    """Multi-view evaluation: softmax per view, mean over a video's views, video-level top-1/top-5.

    Videos are split over ranks without padding, and the per-class counts are summed over ranks, so
    every video is counted exactly once whatever the world size.
    """
    model.eval()
    batch_videos = max(1, batch_clips // views)
    mine = list(range(ctx.rank, len(dataset), ctx.world_size))
    batches = [mine[i:i + batch_videos] for i in range(0, len(mine), batch_videos)]
    loader = torch.utils.data.DataLoader(dataset, batch_sampler=batches, **loader_args,
                                         generator=loader_generator(0, -1))
    num_classes = dataset.num_classes
    correct1 = torch.zeros(num_classes, dtype=torch.float64)
    correct5 = torch.zeros(num_classes, dtype=torch.float64)
    total = torch.zeros(num_classes, dtype=torch.float64)
    broken = set()
    device = ctx.device
    for batch in loader:
        video = batch["video"].to(device, non_blocking=True)  # (B, V, 3, T, H, W)
        b, v = video.shape[:2]
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            logits = model(video.flatten(0, 1))
        probs = logits.float().softmax(dim=-1).view(b, v, -1).mean(dim=1).cpu()
        labels = batch["label"]
        top = probs.topk(min(5, num_classes), dim=-1).indices
        hit1 = top[:, 0] == labels
        hit5 = (top == labels[:, None]).any(dim=-1)
        total.index_add_(0, labels, torch.ones(b, dtype=torch.float64))
        correct1.index_add_(0, labels, hit1.double())
        correct5.index_add_(0, labels, hit5.double())
        broken.update(replaced_indices(batch))
    stacked = all_reduce(torch.stack([correct1, correct5, total]), ctx)
    correct1, correct5, total = stacked
    videos = total.sum().item()
    per_class = [round(100.0 * c / t, 4) if t > 0 else None for c, t in zip(correct1.tolist(), total.tolist())]
    return {"top1": 100.0 * correct1.sum().item() / videos, "top5": 100.0 * correct5.sum().item() / videos,
            "per_class_top1": per_class, "videos": int(videos)}, broken


def make_record(cfg: RunConfig, metrics: dict, counts: Counts, val_set, train_set, plan: StepPlan,
                 amp_dtype, ctx: DistContext, broken: set, progress: Progress, *, wall_time: float,
                 memory: int, memory_kind: str, steps_per_epoch: int) -> RunRecord:
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
        hardware=provenance.hardware(ctx.device, ctx.world_size),
        created_at=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        per_class_top1=metrics["per_class_top1"],
        extra={
            "effective_precision": precision, "peak_lr": cfg.peak_lr, "steps_per_epoch": steps_per_epoch,
            "world_size": ctx.world_size, "grad_accumulation": plan.accumulation,
            "micro_batch": plan.micro_batch, "train_clips": len(train_set), "val_videos": metrics["videos"],
            "val_list_sha256": list_digest(val_set), "train_time_s": round(progress.train_time_s, 3),
            "peak_memory_kind": memory_kind, "attempts": progress.attempts,
            "fvcore_unsupported_ops": counts.unsupported_ops,
        },
    )


def list_digest(dataset) -> str | None:
    """Which validation copy was used (copies differ between labs; DESIGN.md §5)."""
    items = getattr(dataset, "source_list", None)
    if items is None:
        return None
    return hashlib.sha256("\n".join(map(str, items)).encode()).hexdigest()[:16]
