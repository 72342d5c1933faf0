"""Seeds and sample order: everything random in a run is derived from its seed (and the epoch)."""
from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch


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
