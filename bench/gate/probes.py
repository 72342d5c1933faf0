"""Probes: what a configuration computes, measured without training, in a form any machine reproduces.

A trained number moves with the machine (torch build, CPU), so it can only be compared statistically
across machines. These do not: they pin the code's function, trainable set, optimiser schedule and
data pipeline for one configuration, so the gate compares them in every mode, and a change to any of
them (the temporal conv's taps reversed, adapters left frozen, the learning rate off by 10x, frames
shuffled in the loader) fails on any machine, whatever the accuracy did.

* ``function``: logits of the model built by the method's own code, in float64 with every trainable
  tensor perturbed (zero-initialised adapters included, so each inserted module acts), on a fixed
  random clip, through the plain modules (fast paths are only swapped in for CUDA training). Float64
  sums differ between CPUs by ~1e-15.
* ``order_aware``: whether those logits change when the clip's frames are reversed.
* ``trainable``: the count and a digest of the names of the trainable parameters.
* ``schedule``: the learning rate the engine's optimiser holds at the end of every epoch.
* ``data``: the first clips of each split, in the order the engine's sampler yields them, average
  pooled to 4x4 per frame: decoding differences are a fraction of a grey level, a shuffled or
  reversed frame order moves the object between cells.
"""
from __future__ import annotations

import hashlib
import math
import warnings
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import torch
import torch.nn.functional as F

from bench.config import RunConfig
from bench.engine.batching import StepPlan, train_batches
from bench.engine.build import build_run_dataset
from bench.engine.optim import Optimisation
from methods import build_model

PROBE_VERSION = 1
FUNCTION_RTOL, FUNCTION_ATOL = 1e-6, 1e-9
SCHEDULE_RTOL = 1e-9
DATA_ATOL = 0.05  # normalised units; one grey level of 255 is about 0.015
DATA_CLIPS = 2
POOLED = 4
ORDER_ATOL = 1e-9


@dataclass(frozen=True)
class ModelProbes:
    """The model-side probes of one configuration (JSON-ready)."""

    function: list[float]
    order_aware: bool  # the logits change when the frames are reversed
    trainable_count: int
    trainable_digest: str
    schedule: list[float]

    def to_dict(self) -> dict[str, Any]:
        return {"version": PROBE_VERSION, **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelProbes":
        return cls(**{k: v for k, v in data.items() if k != "version"})


def model_probes(cfg: RunConfig, num_classes: int, train_clips: int) -> ModelProbes:
    """Every model probe of ``cfg`` (``num_classes`` and ``train_clips`` are its dataset's)."""
    model = _perturbed_model(cfg, num_classes)
    names = [name for name, _ in model.trainable_named_parameters()]
    logits, reversed_logits = _function(model, cfg)
    return ModelProbes(function=logits, order_aware=_largest(logits, reversed_logits) > ORDER_ATOL,
                       trainable_count=model.parameter_counts()[0],
                       trainable_digest=hashlib.sha256("\n".join(names).encode()).hexdigest()[:16],
                       schedule=_schedule(model, cfg, train_clips))


def data_key(cfg: RunConfig) -> str:
    """Configurations that read the same clips in the same order share one data probe."""
    return f"{cfg.dataset}|{cfg.recipe.name}|seed {cfg.seed}"


def _perturbed_model(cfg: RunConfig, num_classes: int):
    torch.manual_seed(0)
    model = build_model(cfg.method, cfg.backbone, num_classes, cfg.recipe.clip.num_frames, random_init=True,
                        method_options=dict(cfg.method_options)).double().eval()
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for _, param in model.trainable_named_parameters():
            param.add_(0.02 * torch.randn(param.shape, generator=generator, dtype=torch.float64))
    return model


def _function(model, cfg: RunConfig) -> tuple[list[float], list[float]]:
    """Logits on a fixed random clip, and on the same clip with its frames reversed."""
    clip = cfg.recipe.clip
    generator = torch.Generator().manual_seed(2)
    video = torch.randn((2, 3, clip.num_frames, clip.input_size, clip.input_size), generator=generator,
                        dtype=torch.float64)
    with torch.no_grad():  # the plain modules are the reference forward
        return model(video).flatten().tolist(), model(video.flip(2)).flatten().tolist()


def _schedule(model, cfg: RunConfig, train_clips: int) -> list[float]:
    """The lr after each epoch's last step, stepping the engine's own optimiser and scheduler."""
    steps_per_epoch = train_clips // cfg.recipe.batch_size
    opt = Optimisation.make(model, cfg, steps_per_epoch, None, torch.device("cpu"))
    lrs = [opt.optimizer.param_groups[0]["lr"]]
    with warnings.catch_warnings():  # "scheduler.step() before optimizer.step()": no training here
        warnings.simplefilter("ignore", UserWarning)
        for _ in range(cfg.recipe.epochs):
            for _ in range(steps_per_epoch):
                opt.scheduler.step()
            lrs.append(opt.optimizer.param_groups[0]["lr"])
    return lrs


def data_probe(cfg: RunConfig) -> dict[str, list[float]]:
    out = {}
    for split, train in (("train", True), ("val", False)):
        dataset = build_run_dataset(cfg, split, train=train)
        if train:
            dataset.set_epoch(0)
            plan = StepPlan.make(cfg.recipe.batch_size, 1, None)
            indices = train_batches(len(dataset), plan, 0, cfg.seed, 0)[0][:DATA_CLIPS]
        else:
            indices = list(range(DATA_CLIPS))
        pooled = []
        for i in indices:
            video = dataset[i]["video"]  # (3, T, S, S) train, (V, 3, T, S, S) test
            clips = video if video.dim() == 5 else video.unsqueeze(0)
            frames = clips.transpose(1, 2).reshape(-1, 3, *clips.shape[-2:]).float()  # (V*T, 3, S, S)
            pooled += F.adaptive_avg_pool2d(frames, POOLED).flatten().tolist()
        out[split] = [round(v, 4) for v in pooled]
    return out


def model_differences(fresh: ModelProbes, baseline: ModelProbes) -> list[str]:
    """What moved, one line per probe; empty when the configuration computes what its baseline did."""
    problems = []
    if not _close(fresh.function, baseline.function, FUNCTION_RTOL, FUNCTION_ATOL):
        problems.append(f"function probe: the logits moved by up to {_largest(fresh.function, baseline.function):.3g} "
                        "(the model computes another function)")
    if fresh.order_aware != baseline.order_aware:
        problems.append(f"frame order: the model is now order-{'aware' if fresh.order_aware else 'blind'}")
    if (fresh.trainable_count, fresh.trainable_digest) != (baseline.trainable_count, baseline.trainable_digest):
        problems.append(f"trainable set changed: {fresh.trainable_count:,} parameters vs baseline "
                        f"{baseline.trainable_count:,} (names digest {fresh.trainable_digest} vs "
                        f"{baseline.trainable_digest})")
    if not _close(fresh.schedule, baseline.schedule, SCHEDULE_RTOL, 0.0):
        problems.append(f"learning-rate schedule changed: peak {max(fresh.schedule):.6g} vs baseline "
                        f"{max(baseline.schedule):.6g}; per-epoch lr {_short(fresh.schedule)} vs "
                        f"{_short(baseline.schedule)}")
    return problems


def data_differences(fresh: dict[str, list[float]], baseline: dict[str, list[float]]) -> list[str]:
    problems = []
    for split, values in sorted(baseline.items()):
        if not _close(fresh.get(split, []), values, 0.0, DATA_ATOL):
            problems.append(f"data probe ({split}): the first clips the loader yields moved by up to "
                            f"{_largest(fresh.get(split, []), values):.3g} (limit {DATA_ATOL}: frame order, "
                            "sampling or transforms changed)")
    return problems


def _close(a: Sequence[float], b: Sequence[float], rtol: float, atol: float) -> bool:
    return len(a) == len(b) and all(math.isclose(x, y, rel_tol=rtol, abs_tol=atol) for x, y in zip(a, b))


def _largest(a: Sequence[float], b: Sequence[float]) -> float:
    if len(a) != len(b):
        return math.inf
    return max((abs(x - y) for x, y in zip(a, b)), default=0.0)


def _short(values: Sequence[float]) -> str:
    shown = [f"{v:.3g}" for v in values[:4]]
    return "[" + ", ".join(shown) + (", ...]" if len(values) > 4 else "]")
