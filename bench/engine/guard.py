"""The frozen-backbone guard: what a method declares frozen must come out of training unchanged, and
everything it declares trainable must receive a gradient.

"Frozen" is otherwise only asserted: public PETL code has shipped backbones that kept training (the
freezing code was never merged), and a module declared trainable but left out of the forward trains
nothing while still being counted. The guard hashes every frozen tensor before and after training
and notes which trainable tensors ever got a gradient; a run that breaks either rule fails, naming
the tensors, and its record carries both digests.
"""
from __future__ import annotations

import hashlib

import torch
from torch import nn


class FrozenChanged(RuntimeError):
    """Parameters declared frozen changed during training."""


class NeverTrained(RuntimeError):
    """Parameters declared trainable never received a gradient."""


def tensor_digest(tensor: torch.Tensor) -> str:
    data = tensor.detach().contiguous().cpu()
    return hashlib.sha256(data.reshape(-1).view(torch.uint8).numpy().tobytes()).hexdigest()[:16]


def _shown(names: list[str], limit: int = 8) -> str:
    return ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")


class FrozenGuard:
    """Watch one model through its training (``watch`` after each backward, ``check`` at the end)."""

    def __init__(self, model: nn.Module, trainable: list[tuple[str, nn.Parameter]]) -> None:
        trainable_ids = {id(p) for _, p in trainable}
        self.frozen = {name: p for name, p in model.named_parameters() if id(p) not in trainable_ids}
        self.before = {name: tensor_digest(p) for name, p in self.frozen.items()}
        self.trainable = dict(trainable)
        self.without_gradient = set(self.trainable)

    def watch(self) -> None:
        """Note the trainable tensors that hold a gradient now (call after a backward)."""
        if self.without_gradient:
            self.without_gradient = {n for n in self.without_gradient if self.trainable[n].grad is None}

    def state_dict(self) -> dict[str, object]:
        """What a checkpoint keeps, so a resumed run is judged against the run's very start."""
        return {"before": dict(self.before), "without_gradient": sorted(self.without_gradient)}

    def resume(self, state: dict[str, object]) -> None:
        self.before = dict(state["before"])
        self.without_gradient &= set(state["without_gradient"])

    def check(self, trained: bool = True) -> dict[str, object]:
        """Raise if a rule is broken; else the digests for the record. ``trained`` False (an
        evaluation-only run) checks only that nothing moved."""
        after = {name: tensor_digest(p) for name, p in self.frozen.items()}
        changed = sorted(name for name in self.before if after[name] != self.before[name])
        if changed:
            raise FrozenChanged(f"{len(changed)} frozen tensor(s) changed during training: {_shown(changed)}; "
                                "the method's trainable set is not what trained (check its attach() and the "
                                "optimizer's parameter groups)")
        if trained and self.without_gradient:
            missing = sorted(self.without_gradient)
            raise NeverTrained(f"{len(missing)} trainable tensor(s) never received a gradient: {_shown(missing)}; "
                               "they are declared trainable but take no part in the forward")
        return {"frozen_tensors": len(self.before), "frozen_digest_before": _combined(self.before),
                "frozen_digest_after": _combined(after)}


def _combined(digests: dict[str, str]) -> str:
    return hashlib.sha256("\n".join(f"{k} {v}" for k, v in sorted(digests.items())).encode()).hexdigest()[:16]
