"""Every record says whether its run was fed: the data wait, the GPU's busy share, the decoder; the run
summary warns past 20% with the measured remedy; and measuring changes no number."""
import dataclasses
import json
import re
import time
from pathlib import Path

import pytest
import torch

from bench.data import VideoDataset, build_dataset
from bench.engine import feed
from bench.engine.execution import Execution
from bench.engine.loop import execute_run
from bench.reporting.console import print_summary
from bench.reporting.data_bound import MORE_WORKERS, PREPARE_COST, PREPARED, data_bound_notes
from tests.engine_helpers import final_weights, generated_tiny_world, same_metrics, tiny_run
from tests.record_factory import make_record

ROOT = Path(__file__).resolve().parents[1]
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


def test_a_slow_loader_is_measured_and_warned_a_fast_one_is_not(tmp_path, data_root, monkeypatch, capsys):
    cfg = tiny_run(data_root, method="linear_probe")
    with monkeypatch.context() as patch:
        slow_training_items(patch, 0.05)  # 0.4 s per 8-clip batch against a step of a few ms
        slow = execute_run(cfg, tmp_path / "slow", Execution(progress=False))
    assert slow.extra["data_wait_fraction"] > 0.5
    log = (tmp_path / "slow" / "work" / cfg.name / "run.log").read_text()
    waits = [int(w) for w in re.findall(r"epoch \d/3: .* (\d+)% of it waiting for data", log)]
    assert len(waits) == 3 and min(waits) > 50  # a long run's log says so as it goes
    print_summary(tmp_path / "slow", [cfg])
    out = capsys.readouterr().out
    assert (f"warning: synth_motion: 1 run(s) waited for data more than 20% of their training time (linear_probe s0 "
            f"{slow.extra['data_wait_fraction']:.0%}; decoder decord_frame_cache, 0 loader workers)") in out
    assert "a process's first run waits for that decode" in out and "remedy" not in out  # none measured on the CPU
    fast = execute_run(cfg, tmp_path / "fast", Execution(progress=False))  # its videos decoded already, kept
    assert fast.extra["data_wait_fraction"] < 0.2
    print_summary(tmp_path / "fast", [cfg])
    assert "warning" not in capsys.readouterr().out


class Interrupt(Exception):
    pass


def test_a_resumed_run_reports_the_wait_of_its_earlier_attempts(tmp_path, data_root, monkeypatch):
    """Epoch 1 is slow and checkpointed, the run dies in epoch 2 and resumes with a fast loader: the
    record's wait still counts epoch 1's (the checkpoint carries it with the training time)."""
    cfg = tiny_run(data_root, method="linear_probe")

    def die_in_epoch_2(step):
        if step == 3:
            raise Interrupt

    with monkeypatch.context() as patch:
        slow_training_items(patch, 0.05)
        with pytest.raises(Interrupt):
            execute_run(cfg, tmp_path, Execution(progress=False), die_in_epoch_2)
    resumed = execute_run(cfg, tmp_path, Execution(progress=False))
    assert resumed.extra["attempts"] == 2 and resumed.extra["data_wait_fraction"] > 0.4


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
        assert 0 <= wait <= 1 and 0 < busy <= 1 and wait + busy <= 1.05  # the GPU may trail by an optimizer step
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


def fed(record, wait: float, *, dataset_prepared=None, workers: int = 15, cores: int = 16, decoder="pyav_sampled",
        device="cuda"):
    """``record`` as a run that waited ``wait`` of its training time would have written it."""
    return dataclasses.replace(
        record, config={**record.config, "data": {"prepared": dataset_prepared}, "data_root": "/data/k400"},
        hardware={**record.hardware, "cpu_count": cores, "world_size": 1, "device": device},
        extra={**record.extra, "data_wait_fraction": wait, "decoder": decoder, "loader_workers": workers})


def test_the_warning_names_the_measured_remedy_for_the_case():
    originals = fed(make_record("st_adapter", "k400", 0, 70.0), 0.45)
    [note] = data_bound_notes([originals, fed(make_record("full_ft", "k400", 0, 72.0), 0.1)])
    assert note.startswith("warning: k400: 1 run(s) waited for data more than 20% of their training time "
                           "(st_adapter s0 45%; decoder pyav_sampled, 15 loader workers)")
    assert "`python -m bench.data prepare --dataset k400 --root /data/k400 --out COPY`" in note
    assert "from 33.1 to 10.2 ms" in note and "from 283 to 492 clips/s (0.51x to 0.89x" in note
    assert "0.75 s of CPU per 10-s clip (2.56 videos/s with 2 workers on 2 cores), repaid after 12 training" in note
    assert "--workers" not in note  # 15 workers on 16 cores: none to add
    prepared = fed(make_record("st_adapter", "k400", 0, 70.0), 0.3, dataset_prepared={"settings": {}}, workers=4)
    [note] = data_bound_notes([prepared])
    assert "bench.data prepare" not in note and "more `--workers`: this run had 4 per process and 16 cores" in note
    [note] = data_bound_notes([fed(make_record("st_adapter", "ssv2", 0, 50.0), 0.3)])
    assert "(measured on Kinetics-shaped h264 only)" in note
    [note] = data_bound_notes([fed(make_record("st_adapter", "k400", 0, 70.0), 0.3, dataset_prepared={"s": 1})])
    assert "no measured remedy is left for this run's setting" in note
    [note] = data_bound_notes([fed(make_record("st_adapter", "k400", 0, 70.0), 0.3, dataset_prepared={"s": 1},
                                   workers=0, device="cpu")])
    assert "--workers" not in note  # a CPU run's model competes with the workers: not measured
    assert data_bound_notes([make_record("st_adapter", "k400", 0, 70.0)]) == []  # older records: no field, no note


def test_the_quoted_remedies_are_the_committed_measurements():
    original, prepared = (json.loads((ROOT / path).read_text()) for path in PREPARED.records)
    for field, quoted in (("e2e_clips_per_s", PREPARED.clips_per_s), ("ratio", PREPARED.ratio),
                          ("cpu_ms_per_clip", PREPARED.cpu_ms_per_clip)):
        assert (original[field], prepared[field]) == quoted, field
    assert original["format"] == "k400_original" and prepared["format"] == "k400_prepared"
    cost = json.loads((ROOT / PREPARE_COST.record).read_text())
    assert (cost["videos_per_s"], cost["cpu_s_per_video"], cost["workers"], cost["hardware"]["cpu_count"]) == (
        PREPARE_COST.videos_per_s, PREPARE_COST.cpu_s_per_video, PREPARE_COST.workers, 2)
    assert cost["break_even_reads"]["train"] == PREPARE_COST.break_even_reads
    scaling = json.loads((ROOT / MORE_WORKERS.record).read_text())["results"]["k400"]["decode_scaling_train"]
    assert tuple(row["clips_per_s"] for row in scaling) == MORE_WORKERS.clips_per_s
