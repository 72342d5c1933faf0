"""Every record says whether its run was fed: the data wait, the GPU's busy share, the decoder; and
measuring changes no number."""
import time

import pytest
import torch

from bench.data import VideoDataset, build_dataset
from bench.engine import feed
from bench.engine.execution import Execution
from bench.engine.loop import execute_run
from tests.engine_helpers import final_weights, generated_tiny_world, same_metrics, tiny_run

FEED_FIELDS = ("data_wait_fraction", "host_data_wait_fraction", "gpu_busy_fraction", "decoder",
               "fallback_decoder", "loader_workers")


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return generated_tiny_world(tmp_path_factory.mktemp("synth-cache"))


def slow_training_items(monkeypatch, seconds: float) -> None:
    """Plant a slow loader: every training item takes ``seconds`` longer."""
    original = VideoDataset.__getitem__

    def slow(self, index):
        if self.train:
            time.sleep(seconds)
        return original(self, index)

    monkeypatch.setattr(VideoDataset, "__getitem__", slow)


def test_a_record_says_how_its_run_was_fed(tmp_path, data_root):
    record = execute_run(tiny_run(data_root, method="linear_probe"), tmp_path, Execution(progress=False))
    extra = record.extra
    assert set(FEED_FIELDS) <= set(extra)
    assert 0 <= extra["data_wait_fraction"] <= 1
    assert extra["host_data_wait_fraction"] == extra["data_wait_fraction"]  # on the CPU the computation is the host
    assert extra["gpu_busy_fraction"] is None  # not applicable off CUDA
    assert (extra["decoder"], extra["fallback_decoder"], extra["loader_workers"]) == (
        "decord_frame_cache", "pyav_sampled", 0)


def test_a_slow_loader_is_measured_a_fast_one_is_not(tmp_path, data_root, monkeypatch):
    cfg = tiny_run(data_root, method="linear_probe")
    with monkeypatch.context() as patch:
        slow_training_items(patch, 0.05)  # 0.4 s per 8-clip batch against a step of a few ms
        slow = execute_run(cfg, tmp_path / "slow", Execution(progress=False))
    assert slow.extra["data_wait_fraction"] > 0.5
    fast = execute_run(cfg, tmp_path / "fast", Execution(progress=False))  # its videos decoded already, kept
    assert fast.extra["data_wait_fraction"] < 0.2


class Unmeasured(feed.FeedMeter):
    """The loop without its instrumentation: fetches untimed, no events."""

    def fetch(self, batches):
        return next(batches)

    def step_began(self) -> None:
        pass

    def step_ended(self) -> None:
        pass


def test_measuring_the_feed_changes_no_number(tmp_path, data_root, monkeypatch):
    cfg = tiny_run(data_root)  # ST-Adapter with k400-style augmentation: every random draw is exercised
    measured = execute_run(cfg, tmp_path / "measured", Execution(progress=False, keep_checkpoint=True))
    monkeypatch.setattr("bench.engine.loop.FeedMeter", Unmeasured)
    plain = execute_run(cfg, tmp_path / "plain", Execution(progress=False, keep_checkpoint=True))
    assert plain.extra["data_wait_fraction"] == 0 < measured.extra["data_wait_fraction"]  # the patch took
    assert same_metrics(measured, plain) and measured.predictions["sha256"] == plain.predictions["sha256"]
    for column in ("step", "loss", "lr"):
        assert measured.curves["train"][column] == plain.curves["train"][column]
    w_a, w_b = final_weights(tmp_path / "measured", cfg), final_weights(tmp_path / "plain", cfg)
    assert all(torch.equal(w_a[k], w_b[k]) for k in w_a)


class FakeEvent:
    """A CUDA event on a GPU timeline the test moves (``now``, ms); complete once the test says so."""

    now, recorded = 0.0, []

    def __init__(self, enable_timing: bool = False):
        assert enable_timing
        self.done = False

    def record(self) -> None:
        self.time = FakeEvent.now
        FakeEvent.recorded.append(self)

    def query(self) -> bool:
        return self.done

    def synchronize(self) -> None:
        for event in FakeEvent.recorded:
            event.done = True

    def elapsed_time(self, end: "FakeEvent") -> float:
        assert self.done and end.done, "read before the GPU passed it"
        return end.time - self.time


def test_on_cuda_the_stalls_and_spans_come_from_events_read_without_waiting(monkeypatch):
    monkeypatch.setattr(torch.cuda, "Event", FakeEvent)
    monkeypatch.setattr(FakeEvent, "recorded", [])

    def at(ms: float) -> None:
        FakeEvent.now = ms

    def batches():  # the GPU timeline moves while the host waits for each batch
        at(70)  # step 1: the compute stream idles from its backward's end (40) until the batch is staged (70)
        yield {"n": 1}
        at(130)  # step 2: staged while the backward still runs: no stall
        yield {"n": 2}

    meter, loader = feed.FeedMeter(torch.device("cuda")), batches()
    at(0)
    meter.step_began()
    at(40)
    assert meter.fetch(loader) == {"n": 1}
    at(100)
    meter.step_ended()
    assert meter.totals.gpu_busy_s == meter.totals.data_wait_s == 0  # nothing complete: nothing read, no wait
    for event in FakeEvent.recorded:
        event.done = True
    meter.step_began()
    at(130)
    meter.fetch(loader)
    at(180)
    meter.step_ended()  # folds in step 1, leaves step 2 pending
    assert meter.totals.data_wait_s == pytest.approx(0.030) and meter.totals.gpu_busy_s == pytest.approx(0.070)
    totals = meter.take()  # waits for the last event, then starts afresh
    assert totals.data_wait_s == pytest.approx(0.030) and totals.gpu_busy_s == pytest.approx(0.070 + 0.080)
    assert totals.host_wait_s >= 0 and meter.totals == feed.FeedTotals()


@pytest.mark.gpu
def test_on_cuda_a_record_says_how_busy_the_gpu_was_and_how_long_it_waited(tmp_path, data_root, monkeypatch):
    cfg = tiny_run(data_root, method="linear_probe")
    fast = execute_run(cfg, tmp_path / "fast", Execution(progress=False, device="cuda"))
    with monkeypatch.context() as patch:
        slow_training_items(patch, 0.05)
        slow = execute_run(cfg, tmp_path / "slow", Execution(progress=False, device="cuda"))
    for record in (fast, slow):
        wait, busy = record.extra["data_wait_fraction"], record.extra["gpu_busy_fraction"]
        assert 0 <= wait <= 1 and 0 < busy <= 1 and wait + busy <= 1.01
    assert slow.extra["data_wait_fraction"] > 0.5 and slow.extra["host_data_wait_fraction"] > 0.5
    assert slow.extra["gpu_busy_fraction"] < 0.5


def test_decoders_are_named_by_the_reader_that_reads(data_root):
    from bench.data import read_index
    from bench.data.benchmark import DecodeAllDataset
    cfg = tiny_run(data_root)
    sampled = build_dataset(cfg.dataset, "train", cfg.recipe.clip, True, data_root, synth=cfg.synth, frame_cache=False)
    assert (sampled.decoder, sampled.fallback_decoder) == ("pyav_sampled", "decord_sampled")
    index = read_index(cfg.dataset, "train", data_root, cfg.synth)
    assert DecodeAllDataset(cfg.dataset, "train", index, cfg.recipe.clip, True).decoder == "read_frames_decode_all"
