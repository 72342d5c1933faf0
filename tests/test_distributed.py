"""Data-parallel bookkeeping that silently changes results when wrong: how the sampler shards a global
batch over ranks, and that evaluation counts every validation video exactly once (no padding
duplicates), checked with real gloo process groups on CPU; the same code runs NCCL on GPUs
(test ``multigpu`` marks need two of them)."""
from __future__ import annotations

import os
import socket

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from bench.engine.batching import StepPlan, train_batches
from bench.engine.distributed import DistContext
from bench.engine.evaluate import evaluate

VIDEOS, CLASSES, VIEWS = 11, 5, 2  # an odd count: an even split would need padding


@pytest.mark.parametrize("world, micro", [(2, None), (4, 2), (3, 1)])
def test_ranks_share_each_global_batch_without_overlap(world, micro):
    """Every optimizer step sees the same clips whatever the world size: the ranks' shares of a step
    are disjoint and together are the one-process step."""
    global_batch = 12
    one = train_batches(50, StepPlan.make(global_batch, 1, None), 0, seed=3, epoch=1)
    plan = StepPlan.make(global_batch, world, micro)
    per_rank = [train_batches(50, plan, rank, seed=3, epoch=1) for rank in range(world)]
    steps = len(one)
    assert all(len(b) == steps * plan.accumulation for b in per_rank)
    for step in range(steps):
        shares = [sum(b[step * plan.accumulation:(step + 1) * plan.accumulation], []) for b in per_rank]
        flat = sum(shares, [])
        assert len(flat) == len(set(flat)) == global_batch
        assert sorted(flat) == sorted(one[step])


class Clips(torch.utils.data.Dataset):
    """Validation videos as the engine's datasets give them: (views, 3, T, H, W) and a label."""

    num_classes = CLASSES

    def __init__(self) -> None:
        g = torch.Generator().manual_seed(0)
        self.videos = torch.randn(VIDEOS, VIEWS, 3, 2, 4, 4, generator=g)

    def __len__(self) -> int:
        return VIDEOS

    def __getitem__(self, i: int) -> dict:
        return {"video": self.videos[i], "label": i % CLASSES, "index": i, "source_index": i}


def tiny_model() -> nn.Module:
    torch.manual_seed(1)
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 2 * 4 * 4, CLASSES))


def _evaluate_on_rank(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        ctx = DistContext(rank, world, rank, torch.device("cpu"))
        result = evaluate(tiny_model(), Clips(), VIEWS, batch_clips=4, amp_dtype=None, ctx=ctx, loader_args={})
        if rank == 0:
            np.savez(out, source_index=result.source_index, labels=result.labels, topk_index=result.topk_index,
                     topk_prob=result.topk_prob, videos=result.metrics()["videos"])
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("world", [2, 3])
def test_evaluation_counts_every_video_exactly_once_across_ranks(world, tmp_path):
    single = evaluate(tiny_model(), Clips(), VIEWS, batch_clips=4, amp_dtype=None,
                      ctx=DistContext(0, 1, 0, torch.device("cpu")), loader_args={})
    out = tmp_path / "ranks.npz"
    mp.spawn(_evaluate_on_rank, args=(world, _free_port(), str(out)), nprocs=world, join=True)
    gathered = np.load(out)
    assert int(gathered["videos"]) == VIDEOS == single.metrics()["videos"]
    assert (gathered["source_index"] == np.arange(VIDEOS)).all()
    for name in ("labels", "topk_index"):
        assert (gathered[name] == getattr(single, name)).all(), name
    np.testing.assert_allclose(gathered["topk_prob"], single.topk_prob, rtol=0, atol=1e-6)


# -- GPUs: NCCL ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    from tests.engine_helpers import generated_tiny_world
    return generated_tiny_world(tmp_path_factory.mktemp("synth-cache"))


@pytest.mark.gpu
def test_a_one_gpu_nccl_group_runs_the_ddp_path_and_matches_a_plain_run(tmp_path, monkeypatch, data_root):
    """World size 1 through init_process_group("nccl") and DistributedDataParallel: the code path of
    many GPUs, on one; its gradients are all-reduced over one rank, so the numbers do not move."""
    from bench.engine.execution import Execution
    from bench.engine.loop import execute_run
    from tests.engine_helpers import same_metrics, tiny_run
    cfg = tiny_run(data_root, head_dropout=0.0)
    plain = execute_run(cfg, tmp_path / "plain", Execution(progress=False))
    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(_free_port()))
    try:
        grouped = execute_run(cfg, tmp_path / "grouped", Execution(progress=False))
        assert dist.is_initialized() and dist.get_backend() == "nccl" and dist.get_world_size() == 1
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    assert grouped.extra["world_size"] == 1 and same_metrics(grouped, plain)
    assert grouped.curves["train"]["loss"] == plain.curves["train"]["loss"]


# bf16 autocast rounds each op to 8 bits of mantissa (relative 2^-8 = 0.4%) and two ranks sum their
# gradients in another order than one GPU does, so the curves part by a few such roundings per step;
# 2% of the loss is about five of them and far below what a wrong shard or a lost rank does (a rank
# training on the other's half, or on nothing, moves the loss by tens of percent within 50 steps).
LOSS_RTOL = 0.02


@pytest.mark.multigpu
def test_two_gpus_equal_one(tmp_path, world_cache, monkeypatch):
    from bench.run import main
    from bench.store.records import load_records
    monkeypatch.setenv("BENCH_CACHE", str(world_cache))
    records = {}
    for gpus in (1, 2):
        results = tmp_path / f"gpus{gpus}"
        assert main(["--datasets", "synth_motion", "--methods", "st_adapter", "--seeds", "1", "--gpus", str(gpus),
                     "--log-every", "1", "--results", str(results), "--no-summary"]) == 0
        [records[gpus]] = load_records(results)
    one, two = records[1], records[2]
    assert two.extra["world_size"] == 2 and two.extra["micro_batch"] * 2 == one.extra["micro_batch"]
    assert two.predictions["videos"] == one.predictions["videos"] == 640  # each video once, no padding
    steps = min(50, len(one.curves["train"]["loss"]))
    np.testing.assert_allclose(two.curves["train"]["loss"][:steps], one.curves["train"]["loss"][:steps],
                               rtol=LOSS_RTOL)
    assert abs(two.top1 - one.top1) <= 3.0  # points: the bf16 curves' spread after 16 epochs
