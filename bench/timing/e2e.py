"""End-to-end training on real-format video against the step alone, measured in the same process.

``python -m bench.perf --e2e`` writes Kinetics-shaped fixtures (h264 mp4, 340x256, 30 fps, 10 s,
keyframes 250 apart; the originals and a ``bench.data prepare`` copy) and an SSv2-shaped one (VP9
webm, 427x240, 12 fps, 2-6 s) under the cache, runs the real engine (``execute_run``: loader
workers, device transforms, training loop, 3-view evaluation) for each method on each, and times
the method's step alone (``timing.step.measure``, random clips already on the GPU) in the same
process. Per run it records: e2e clips/s over the steady steps of training (the first
``skip_steps`` are worker start-up), the step-alone clips/s and their ratio, the GPU's busy
fraction over those steps (NVML), the CPU time every process of the machine spent per clip
(``/proc/stat``, with the cores busy by kind), the same for evaluation, and the training loader's
clips/s by itself (no GPU work: the data path's ceiling), and what the run's own record says about
its feeding (``bench.engine.feed``: ``data_wait_fraction``, the GPU's busy fraction from CUDA events
as ``run_gpu_busy_fraction`` beside NVML's, and the ``decoder``; over the whole of training, not only
the timed steps). Precision is the step benchmark's bf16 autocast for both, so the ratio measures the
data path alone. One record per (format, method): ``results/perf/e2e_<format>_<method>.json``.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import os
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from bench.config import RANDOM_WEIGHTS, RunConfig, default_recipe, effective_precision
from bench.data.fixtures import KINETICS_FORMAT, SSV2_FORMAT, ClipFormat, FixtureConfig, ensure_fixture
from bench.data.prepare import EncodeSettings
from bench.engine import Execution, execute_run
from bench.timing.cases import SETTINGS, BenchSpec, Case
from bench.timing.records import environment, write_json
from bench.timing.step import measure

FORMATS = ("k400_original", "k400_prepared", "ssv2")
METHODS = ("st_adapter", "full_ft")


@dataclass(frozen=True)
class E2ESpec:
    train_clips: int = 1536
    val_videos: int = 320
    distinct: int = 64  # encoded clips per fixture; the rest are hard links (same decoding, no encoding)
    batch_size: int = 32
    workers: int = max(1, (os.cpu_count() or 2) - 1)
    skip_steps: int = 6
    backbone: str = "clip_vit_b16"
    device_transforms: bool = True
    device: str = "cuda"
    input_size: int = 224  # smaller only for smoke runs on small backbones (short-side jitter scaled alike)
    fixture_format: dict[str, ClipFormat] | None = None  # per dataset; None: the real shapes


def recipe_for(dataset: str, spec: E2ESpec):
    """The dataset's recipe for one epoch at the benchmark's batch, in the step benchmark's precision."""
    changes: dict[str, Any] = dict(epochs=1, warmup_epochs=0, batch_size=spec.batch_size, precision="bf16")
    if spec.input_size != 224:
        changes.update(input_size=spec.input_size,
                       short_side_range=(spec.input_size, round(spec.input_size * 258 / 224)))
    return default_recipe(dataset).with_overrides(**changes)


def fixture(fmt: str, spec: E2ESpec, cache: Path) -> tuple[str, Path]:
    """(dataset name, root) of a format's fixture, written on first use."""
    dataset = fmt.split("_")[0]
    shapes = spec.fixture_format or {"k400": KINETICS_FORMAT, "ssv2": SSV2_FORMAT}
    config = FixtureConfig(dataset, spec.train_clips, spec.val_videos, fmt=shapes[dataset], distinct=spec.distinct,
                           prepared=EncodeSettings() if fmt == "k400_prepared" else None)
    return dataset, ensure_fixture(config, cache / "fixtures")


def case_for(method: str, dataset: str) -> Case:
    """The recipe's model of ``method``: ST-Adapter 12x384 on K400, 24x384 on SSv2."""
    options = dict(default_recipe(dataset).options_for(method))
    label = method if not options.get("preset") else f"{method}_{options['preset']}"
    return Case(label, method, options)


class Sampler:
    """Machine CPU time (/proc/stat) and GPU busy fraction (NVML, every 50 ms) between ``start`` and ``stop``."""

    def __init__(self, device: torch.device):
        self.device, self.samples, self.running, self.nvml = device, [], False, None
        if device.type != "cuda":
            return
        try:
            import pynvml
            pynvml.nvmlInit()
            self.nvml = pynvml
            self.handle = pynvml.nvmlDeviceGetHandleByIndex(device.index or 0)
        except Exception:  # no NVML: the busy fraction is left out, never guessed
            self.nvml = None

    FIELDS = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")

    @classmethod
    def cpu_times(cls) -> dict[str, float]:
        """The machine's CPU seconds so far by kind (/proc/stat's first line, all cores)."""
        with open("/proc/stat") as stat:
            values = [int(v) / os.sysconf("SC_CLK_TCK") for v in stat.readline().split()[1:9]]
        return dict(zip(cls.FIELDS, values))

    @staticmethod
    def busy(times: dict[str, float]) -> float:
        """CPU seconds spent running something here (steal is the host's, idle and iowait nobody's)."""
        return sum(v for k, v in times.items() if k not in ("idle", "iowait", "steal"))

    def _poll(self) -> None:
        while self.running:
            self.samples.append(self.nvml.nvmlDeviceGetUtilizationRates(self.handle).gpu)
            time.sleep(0.05)

    def start(self) -> None:
        self.cpu0, self.t0, self.samples, self.running = self.cpu_times(), time.perf_counter(), [], True
        if self.nvml is not None:
            self.thread = threading.Thread(target=self._poll, daemon=True)
            self.thread.start()

    def stop(self) -> dict[str, Any]:
        self.running = False
        elapsed, now = time.perf_counter() - self.t0, self.cpu_times()
        if self.nvml is not None:
            self.thread.join()
        spent = {k: now[k] - self.cpu0[k] for k in now}
        busy = sum(self.samples) / len(self.samples) / 100 if self.samples else None
        return {"elapsed_s": elapsed, "cpu_s": self.busy(spent), "gpu_busy_fraction": busy,
                "cores_by_kind": {k: round(v / elapsed, 2) for k, v in spent.items()},
                "load_average_1min": os.getloadavg()[0]}


def time_device_transform(dataset: str, root: Path, recipe, spec: E2ESpec, repeats: int = 5) -> dict[str, float]:
    """Host ms (launching) and device ms (CUDA events) of ``DeviceClipTransform`` on one loader batch."""
    from bench.data import build_dataset
    from bench.data.gpu_transforms import DeviceClipTransform
    train_set = build_dataset(dataset, "train", recipe.clip, True, root, device_transforms=True)
    loader = torch.utils.data.DataLoader(train_set, batch_size=spec.batch_size, num_workers=1,
                                         collate_fn=train_set.collate_fn)
    batch = next(iter(loader))  # decoded in a worker: this process forks the next run's workers
    device = torch.device(spec.device)
    transform = DeviceClipTransform(recipe.clip, True)
    moved = {**batch, "frames": batch["frames"].to(device)}
    transform(moved)  # warm-up: weight caches, allocator
    host, gpu = [], []
    for _ in range(repeats):
        start_event, end_event = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize(device)
        begin = time.perf_counter()
        start_event.record()
        transform(moved)
        end_event.record()
        host.append((time.perf_counter() - begin) * 1000)
        end_event.synchronize()
        gpu.append(start_event.elapsed_time(end_event))
    return {"host_ms_per_batch": round(sorted(host)[len(host) // 2], 2),
            "device_ms_per_batch": round(sorted(gpu)[len(gpu) // 2], 2),
            "frames_mb_per_batch": round(batch["frames"].numel() / 1e6, 1)}


def loader_alone(dataset: str, root: Path, recipe, spec: E2ESpec, train: bool = True) -> dict[str, Any]:
    """Clips/s of the training (or evaluation) loader by itself: the engine's batches, workers, collate
    and pinning, no GPU work; the data path's own ceiling, to set beside the end-to-end figure.
    Evaluation clips are views (a video gives ``recipe.clip.views``)."""
    from bench.data import build_dataset
    from bench.engine.batching import StepPlan, train_batches
    from bench.engine.loop import loader_worker_init
    data = build_dataset(dataset, "train" if train else "val", recipe.clip, train, root,
                         device_transforms=spec.device_transforms)
    data.set_epoch(0)
    if train:
        batches, clips = train_batches(len(data), StepPlan.make(spec.batch_size, 1, None), 0, 0, 0), 1
    else:
        videos, clips = max(1, spec.batch_size // recipe.clip.views), recipe.clip.views
        batches = [list(range(i, min(i + videos, len(data)))) for i in range(0, len(data), videos)]
    loader = torch.utils.data.DataLoader(data, batch_sampler=batches, num_workers=spec.workers,
                                         pin_memory=spec.device == "cuda", worker_init_fn=loader_worker_init(),
                                         collate_fn=data.collate_fn)
    sampler = Sampler(torch.device("cpu"))
    count, skip = 0, min(spec.skip_steps, len(batches) // 4)
    for number, batch in enumerate(loader):
        if number == skip:
            sampler.start()
        elif number > skip:
            count += len(batch["label"]) * clips
    window = sampler.stop()
    if not count:
        raise ValueError(f"{len(batches)} batches leave none to time after {skip} skipped")
    return {"clips_per_s": round(count / window["elapsed_s"], 1),
            "cpu_ms_per_clip": round(window["cpu_s"] / count * 1000, 2), "cores_by_kind": window["cores_by_kind"]}


def run_e2e(fmt: str, method: str, spec: E2ESpec, cache: Path, results: Path,
            alone: dict[str, Any] | None = None) -> dict[str, Any]:
    """One (format, method): the engine end to end, then the step alone, in this process."""
    device = torch.device(spec.device)
    dataset, root = fixture(fmt, spec, cache)
    recipe = recipe_for(dataset, spec)
    case = case_for(method, dataset)
    cfg = RunConfig(method=method, dataset=dataset, backbone=spec.backbone, recipe=recipe, seed=0,
                    weights=RANDOM_WEIGHTS, method_options=case.options, data_root=str(root),
                    precision=effective_precision(recipe.precision, spec.device))
    sampler = Sampler(device)
    window: dict[str, Any] = {}

    def on_step(step: int) -> None:
        if step == spec.skip_steps:
            sampler.start()
        elif step == spec.train_clips // spec.batch_size:
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            window.update(sampler.stop(), steps=step - spec.skip_steps)

    execution = Execution(device=spec.device, num_workers=spec.workers, progress=False,
                          device_transforms=spec.device_transforms)
    record = execute_run(cfg, results, execution, on_step)
    clips = window["steps"] * spec.batch_size
    bench = BenchSpec(backbone=spec.backbone, num_classes=len(record.per_class_top1), batch_size=spec.batch_size,
                      input_size=spec.input_size, device=spec.device)
    step = measure(case, SETTINGS["fast"], bench)
    e2e = clips / window["elapsed_s"]
    views = recipe.clip.views
    eval_clips = record.extra["val_videos"] * views / record.extra["eval_time_s"]
    env = environment(bench)
    transform_cost = (time_device_transform(dataset, root, recipe, spec)
                      if spec.device_transforms and device.type == "cuda" else None)
    return {
        "kind": "perf_e2e", "method": method, "case": case.label, "format": fmt,
        "e2e_clips_per_s": round(e2e, 1), "step_clips_per_s": round(step.clips_per_s, 1),
        "ratio": round(e2e / step.clips_per_s, 3), "gpu_busy_fraction": window["gpu_busy_fraction"],
        "cpu_ms_per_clip": round(window["cpu_s"] / clips * 1000, 2), "cores_by_kind": window["cores_by_kind"],
        "load_average_1min": window["load_average_1min"], "loader_alone": alone,
        "timed_steps": window["steps"], "timed_s": round(window["elapsed_s"], 3),
        "whole_run_train_clips_per_s": record.throughput_clips_per_s,
        "eval_clips_per_s": round(eval_clips, 1), "eval_step_clips_per_s": round(step.eval_clips_per_s, 1),
        "eval_ratio": round(eval_clips / step.eval_clips_per_s, 3), "eval_views": views,
        "eval_videos": record.extra["val_videos"], "eval_includes": "loader start-up and the last partial batch",
        "workers": spec.workers, "cpu_count": os.cpu_count(), "gpu": env["hardware"].get("gpu", "none"),
        "transforms": record.extra["transforms"], "device_transform": transform_cost,
        "decoder": record.extra["decoder"], "data_wait_fraction": record.extra["data_wait_fraction"],
        "run_gpu_busy_fraction": record.extra["gpu_busy_fraction"],
        "precision": "bf16 autocast (e2e and step alike)",
        "spec": dataclasses.asdict(spec), "fixture_root": str(root), "environment": env,
        "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


def run_all(formats: list[str], methods: list[str], spec: E2ESpec, cache: Path, out: Path | None,
            tag: str = "") -> list[dict[str, Any]]:
    """Every (format, method); records written as measured, so a later failure loses nothing."""
    found = []
    with tempfile.TemporaryDirectory() as results:
        for fmt in formats:
            dataset, root = fixture(fmt, spec, cache)
            alone = {split: loader_alone(dataset, root, recipe_for(dataset, spec), spec, split == "train")
                     for split in ("train", "eval")}
            for split, a in alone.items():
                print(f"{fmt:>14} {split} loader alone {a['clips_per_s']:6.1f} clips/s, {a['cpu_ms_per_clip']:5.1f} "
                      f"CPU ms/clip, cores {a['cores_by_kind']}", flush=True)
            for method in methods:
                result = run_e2e(fmt, method, spec, cache, Path(results), alone)
                found.append(result)
                if out is not None:
                    write_json(out / f"e2e_{fmt}_{method}{tag}.json", result)
                print(format_row(result), flush=True)
    return found


def format_row(r: dict[str, Any]) -> str:
    busy = "n/a" if r["gpu_busy_fraction"] is None else f"{r['gpu_busy_fraction']:.2f}"
    return (f"{r['format']:>14} {r['case']:<18} e2e {r['e2e_clips_per_s']:6.1f}  step {r['step_clips_per_s']:6.1f}  "
            f"ratio {r['ratio']:.2f}  gpu busy {busy}  data wait {r['data_wait_fraction']:.2f}  "
            f"cpu {r['cpu_ms_per_clip']:5.1f} ms/clip  "
            f"eval {r['eval_clips_per_s']:6.1f} / {r['eval_step_clips_per_s']:6.1f} ({r['eval_ratio']:.2f})")
