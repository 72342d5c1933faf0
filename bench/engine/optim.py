"""The optimiser rule of the matched recipe: AdamW without decay on biases, warmup + half cosine, autocast."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from bench.config import RunConfig
from bench.engine.seeding import rng_state, set_rng_state


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
    # Fused: one kernel for every parameter, on GPU and CPU alike. On a CPU it also takes the square
    # root of the second moment with ATen's own vector code; the unfused step's torch.sqrt goes to
    # MKL's vector math library, whose results differ between an Intel and an AMD CPU even in MKL's
    # COMPATIBLE mode (measured, bench.numerics), so it would undo the portable profile.
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=lr, betas=betas, fused=True)


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of a run's (effective) precision; None means fp32, no autocast.

    The precision was fixed when the run was planned (it is part of the run's identity), so a run
    planned for a GPU refuses to run on a CPU instead of computing something else under its name.
    """
    if precision == "fp32":
        return None
    if device.type != "cuda":
        raise RuntimeError(f"this run was planned for a GPU (precision {precision}) but runs on {device}; "
                           "plan it for the CPU (a profile with device: cpu) or run it where CUDA is")
    return torch.float16 if precision == "fp16" else torch.bfloat16


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
