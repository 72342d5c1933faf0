"""The engine on real tiny runs: optimiser and schedule, determinism, resume, gradient accumulation."""
import math
import signal

import numpy as np
import pytest
import torch
from torch import nn

from bench.engine.batching import StepPlan, train_batches
from bench.engine.execution import Execution
from bench.engine.guard import FrozenChanged, NeverTrained
from bench.engine.loop import execute_run
from bench.engine.optim import WarmupCosine, make_optimizer
from bench.engine.preemption import STOPS
from bench.store.predictions import load_predictions
from bench.store.records import load_records
from tests.engine_helpers import final_weights, same_metrics, tiny_run, trained


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return tmp_path_factory.mktemp("synth-cache")


def test_schedule_is_linear_warmup_then_half_cosine_per_iteration():
    layer = nn.Linear(2, 2)
    optimizer = make_optimizer(list(layer.named_parameters()), lr=0.4, weight_decay=0.01, betas=(0.9, 0.999))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, WarmupCosine(warmup_steps=4, total_steps=12))
    lrs = []
    for _ in range(13):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs[:5] == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4])
    assert lrs[8] == pytest.approx(0.2)  # half way down the cosine
    assert lrs[12] == pytest.approx(0.0, abs=1e-12)
    assert all(a >= b for a, b in zip(lrs[4:], lrs[5:]))
    expected = [0.4 * 0.5 * (1 + math.cos(math.pi * (s - 4) / 8)) for s in range(4, 13)]
    assert lrs[4:] == pytest.approx(expected)


def test_no_weight_decay_on_biases():
    model = nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4))
    optimizer = make_optimizer(list(model.named_parameters()), lr=1e-3, weight_decay=0.01, betas=(0.9, 0.999))
    decay = {id(p) for g in optimizer.param_groups if g["weight_decay"] > 0 for p in g["params"]}
    names = {n for n, p in model.named_parameters() if id(p) in decay}
    assert names == {"0.weight", "1.weight"}
    assert optimizer.defaults["betas"] == (0.9, 0.999)


def test_step_plan_splits_the_global_batch():
    plan = StepPlan.make(global_batch=8, world_size=2, batch_per_device=3)
    assert (plan.per_rank, plan.micro_batch, plan.accumulation) == (4, 2, 2)
    with pytest.raises(ValueError, match="multiple of the number of GPUs"):
        StepPlan.make(global_batch=9, world_size=2, batch_per_device=None)


def test_ranks_share_out_exactly_the_single_process_steps():
    one = StepPlan.make(8, 1, None)
    two = StepPlan.make(8, 2, 2)
    single = train_batches(20, one, rank=0, seed=3, epoch=1)
    rank0, rank1 = (train_batches(20, two, rank=r, seed=3, epoch=1) for r in (0, 1))
    assert len(single) == 2  # 20 clips -> 2 full global batches, the rest dropped
    for step, batch in enumerate(single):
        shares = rank0[2 * step:2 * step + 2] + rank1[2 * step:2 * step + 2]
        assert sorted(i for micro in shares for i in micro) == sorted(batch)
    assert train_batches(20, one, 0, seed=3, epoch=2) != single


def test_same_run_twice_gives_identical_metrics_and_weights(tmp_path, data_root):
    """... also when one of them evaluates only at the end and logs every step: watching changes nothing."""
    cfg = tiny_run(data_root)
    a = execute_run(cfg, tmp_path / "a", Execution(progress=False, keep_checkpoint=True))
    b = execute_run(cfg, tmp_path / "b", Execution(progress=False, keep_checkpoint=True, evaluations=1, log_every=1))
    assert same_metrics(a, b) and a.predictions["sha256"] == b.predictions["sha256"]
    assert len(a.curves["eval"]["step"]) == 3 and len(b.curves["eval"]["step"]) == 1
    assert a.curves["train"]["step"] == b.curves["train"]["step"] == list(range(1, 7))
    assert a.curves["train"]["loss"] == b.curves["train"]["loss"]
    wa, wb = final_weights(tmp_path / "a", cfg), final_weights(tmp_path / "b", cfg)
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    assert trained(wa)


class Interrupt(Exception):
    pass


def test_run_killed_mid_epoch_resumes_to_identical_metrics(tmp_path, data_root):
    cfg = tiny_run(data_root)  # 2 steps per epoch; head dropout on, so the RNG state must be restored
    reference = execute_run(cfg, tmp_path / "whole", Execution(progress=False, keep_checkpoint=True))

    def stop_at_step_3(step):
        if step == 3:  # the first step of epoch 2: the checkpoint of epoch 1 exists
            raise Interrupt

    with pytest.raises(Interrupt):
        execute_run(cfg, tmp_path / "cut", Execution(progress=False, keep_checkpoint=True), stop_at_step_3)
    assert load_records(tmp_path / "cut") == []
    resumed = execute_run(cfg, tmp_path / "cut", Execution(progress=False, keep_checkpoint=True))
    assert resumed.extra["attempts"] == 2
    assert same_metrics(resumed, reference)
    for part, columns in (("train", ("step", "loss", "lr")), ("eval", ("step", "top1", "top5"))):
        for column in columns:  # the curves of the killed attempt's first epoch survive the restart
            assert resumed.curves[part][column] == reference.curves[part][column]
    w_ref, w_res = final_weights(tmp_path / "whole", cfg), final_weights(tmp_path / "cut", cfg)
    assert all(torch.equal(w_ref[k], w_res[k]) for k in w_ref)


def test_a_run_saved_mid_interval_resumes_with_the_same_curve_points(tmp_path, data_root):
    """A stop signal saves the run at its next step, inside a logging interval: the interval's loss
    so far is saved with it, so the resumed run logs the points an uninterrupted one does."""
    cfg = tiny_run(data_root)
    execution = Execution(progress=False, log_every=2)  # 2 steps per epoch: one point per epoch
    reference = execute_run(cfg, tmp_path / "whole", execution)

    def stop(step):
        if step == 3:
            STOPS.note(signal.SIGUSR2)  # what the handler notes when SLURM stops a job
        if step == 4:
            raise Interrupt  # killed before the interval ends

    with pytest.raises(Interrupt):
        execute_run(cfg, tmp_path / "cut", execution, stop)
    resumed = execute_run(cfg, tmp_path / "cut", execution)
    assert resumed.extra["attempts"] == 2 and same_metrics(resumed, reference)
    assert resumed.curves["train"]["step"] == reference.curves["train"]["step"] == [2, 4, 6]
    assert resumed.curves["train"]["loss"] == reference.curves["train"]["loss"]
    assert resumed.curves["eval"] == reference.curves["eval"]


def test_gradient_accumulation_matches_the_full_batch(tmp_path, data_root):
    cfg = tiny_run(data_root, head_dropout=0.0)
    full = execute_run(cfg, tmp_path / "full", Execution(progress=False, keep_checkpoint=True))
    accumulated = execute_run(cfg, tmp_path / "acc", Execution(progress=False, keep_checkpoint=True,
                                                               batch_per_device=4))
    assert accumulated.extra["grad_accumulation"] == 2
    assert same_metrics(full, accumulated)
    w_full, w_acc = final_weights(tmp_path / "full", cfg), final_weights(tmp_path / "acc", cfg)
    assert trained(w_full)
    assert all(torch.allclose(w_full[k], w_acc[k], atol=1e-5) for k in w_full)


def test_record_is_complete(tmp_path, data_root):
    cfg = tiny_run(data_root, method="linear_probe")
    record = execute_run(cfg, tmp_path, Execution(progress=False))
    assert record.config_hash == cfg.hash() and record.config == cfg.to_dict()
    assert record.views == 2 and record.gflops_per_view > 0 and record.params_trainable == 64 * 10 + 10
    assert record.throughput_clips_per_s > 0 and record.peak_memory_bytes > 0 and record.wall_time_s > 0
    assert len(record.per_class_top1) == 10 and record.broken_videos == 0
    assert record.extra["effective_precision"] == "fp32" and record.git_commit
    assert (tmp_path / "work" / cfg.name / "run.log").read_text().count("epoch") >= 3
    assert not (tmp_path / "work" / cfg.name / "checkpoint.pt").exists()


def test_a_video_only_the_other_reader_reads_is_a_fallback_not_broken(tmp_path, data_root, monkeypatch):
    """A planted reader defect on one training and one validation video: both are read by the other
    reader and evaluated, the record counts them apart from broken videos, the run log names each once."""
    from bench.data import VideoDataset, read_index
    from bench.data.decode import VideoDecodeError, read_frames

    cfg = tiny_run(data_root, method="linear_probe")
    defective = {read_index(cfg.dataset, split, data_root, cfg.synth).entries[1].path for split in ("train", "val")}

    def reader_with_a_defect(path, choose, cache=None):
        if path in defective:
            raise VideoDecodeError(path, IndexError("a planted reader defect"))
        return read_frames(path, choose, cache)

    monkeypatch.setattr(VideoDataset, "frame_reader", staticmethod(reader_with_a_defect))
    record = execute_run(cfg, tmp_path, Execution(progress=False))
    assert record.broken_videos == 0 and record.extra["val_skipped_broken"] == 0
    assert record.extra["reader_fallbacks"] == 2 and record.extra["val_videos"] == 10
    assert [i.split(":")[0] for i in record.extra["reader_fallback_ids"]] == ["train", "val"]
    log = (tmp_path / "work" / cfg.name / "run.log").read_text()
    assert all(log.count(f"video {path} was read by the other reader") == 1 for path in defective), log


def test_record_keeps_per_video_outputs_and_curves(tmp_path, data_root):
    cfg = tiny_run(data_root, method="linear_probe")
    record = execute_run(cfg, tmp_path, Execution(progress=False))
    predictions = load_predictions(tmp_path, record)
    assert (tmp_path / "runs" / f"{cfg.name}.predictions.npz").is_file()
    assert predictions.videos == record.extra["val_videos"] == 10 and predictions.top_k == 5
    assert 100 * predictions.top1_correct.mean() == pytest.approx(record.top1, abs=1e-9)
    assert 100 * predictions.top5_correct.mean() == pytest.approx(record.top5, abs=1e-9)
    ids = predictions.video_ids.tolist()
    assert ids == [f"videos/val/{i:06d}" for i in range(10)]  # relative to the dataset root, never absolute
    assert (predictions.topk_prob[:, :-1] >= predictions.topk_prob[:, 1:]).all()
    assert not any(str(tmp_path) in line for line in (tmp_path / "runs" / record.file_name).read_text().splitlines()
                   if "predictions" in line)
    curves = record.curves
    assert curves["steps_per_epoch"] == 2 and curves["log_every"] == 1
    assert curves["train"]["step"] == [1, 2, 3, 4, 5, 6]
    assert curves["train"]["lr"][0] == 0.0 and max(curves["train"]["lr"]) == pytest.approx(cfg.peak_lr)
    assert all(v > 0 for v in curves["train"]["clips_per_s"]) and all(v > 0 for v in curves["train"]["loss"])
    assert curves["eval"]["step"] == [2, 4, 6] and curves["eval"]["top1"][-1] == pytest.approx(record.top1)


@pytest.mark.gpu
@pytest.mark.parametrize("precision, half_frozen, expected", [("auto", False, "bf16"), ("fp16", True, "fp16")])
def test_gpu_autocast_precisions(tmp_path, data_root, precision, half_frozen, expected):
    """bf16 autocast by default on GPU; fp16 with a GradScaler and frozen weights in fp16 (the reference)."""
    cfg = tiny_run(data_root, precision=precision, half_frozen=half_frozen)
    record = execute_run(cfg, tmp_path, Execution(progress=False, keep_checkpoint=True, device="cuda"))
    assert record.extra["effective_precision"] == expected
    assert record.extra["peak_memory_kind"] == "cuda_max_allocated" and record.peak_memory_bytes > 0
    weights = final_weights(tmp_path, cfg)
    assert trained(weights) and all(v.dtype == torch.float32 for v in weights.values())  # trainable stay fp32
    state = torch.load(tmp_path / "work" / cfg.name / "checkpoint.pt", weights_only=False)
    assert ("scale" in state["scaler"]) == (precision == "fp16")  # the GradScaler only with fp16


def test_data_loading_workers_do_not_change_the_result(tmp_path, data_root):
    """Augmentation draws depend on (seed, epoch, sample) only, not on which process decodes."""
    cfg = tiny_run(data_root)
    inline = execute_run(cfg, tmp_path / "inline", Execution(progress=False, keep_checkpoint=True))
    workers = execute_run(cfg, tmp_path / "workers", Execution(progress=False, keep_checkpoint=True, num_workers=2))
    assert same_metrics(inline, workers)
    w_a, w_b = final_weights(tmp_path / "inline", cfg), final_weights(tmp_path / "workers", cfg)
    assert all(torch.equal(w_a[k], w_b[k]) for k in w_a)


def test_tensorboard_event_files(tmp_path, data_root):
    """--tensorboard mirrors the record's curves as scalars (the optional package; skipped without it)."""
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = tiny_run(data_root, method="linear_probe")
    record = execute_run(cfg, tmp_path, Execution(progress=False, tensorboard_dir=str(tmp_path / "tb")))
    events = EventAccumulator(str(tmp_path / "tb" / cfg.name))
    events.Reload()
    assert {"train/loss", "train/lr", "train/clips_per_s", "eval/top1", "eval/top5"} <= set(events.Tags()["scalars"])
    assert [e.step for e in events.Scalars("train/loss")] == record.curves["train"]["step"]
    assert [e.value for e in events.Scalars("eval/top1")] == pytest.approx(record.curves["eval"]["top1"])


def test_evaluation_rows_of_uneven_ranks_come_back_in_dataset_order():
    from bench.engine.evaluate import _assemble

    def rows(indices):
        n = len(indices)
        return {"index": np.array(indices), "source_index": np.array(indices), "label": np.array(indices) % 3,
                "topk_index": np.tile(np.arange(3), (n, 1)), "topk_prob": np.full((n, 3), 1 / 3),
                "fallback": np.array(indices) == 5}

    evaluation = _assemble([rows([0, 2, 4, 6]), rows([1, 3, 5])], num_classes=3)  # 7 videos over 2 ranks
    assert evaluation.labels.tolist() == [0, 1, 2, 0, 1, 2, 0] and evaluation.broken == set()
    assert evaluation.fallback_sources == {5}
    assert evaluation.metrics()["top1"] == pytest.approx(100 * 3 / 7)
    with pytest.raises(RuntimeError, match="exactly once"):
        _assemble([rows([0, 2]), rows([0, 1])], num_classes=3)


def test_the_frozen_guard_records_that_nothing_frozen_moved(tmp_path, data_root):
    record = execute_run(tiny_run(data_root, epochs=1), tmp_path, Execution(progress=False))
    guard = record.extra["frozen_guard"]
    assert guard["frozen_tensors"] > 0 and guard["frozen_digest_before"] == guard["frozen_digest_after"]


def test_a_frozen_layer_left_trainable_fails_the_run_naming_it(tmp_path, data_root, monkeypatch):
    """The planted bug of UniFormerV2's issue 34: the backbone's freezing code never ran for a layer,
    so the optimiser updates it."""
    import bench.engine.optim as optim
    original = optim.make_optimizer

    def leaky(named, lr, weight_decay, betas):
        optimizer = original(named, lr, weight_decay, betas)
        leaked = built[0].encoder.blocks[1].mlp.fc1.weight
        leaked.requires_grad_(True)
        optimizer.add_param_group({"params": [leaked], "weight_decay": weight_decay})
        return optimizer

    import bench.engine.build as build
    built = []
    build_run_model = build.build_run_model
    monkeypatch.setattr(build, "build_run_model", lambda *a: built.append(build_run_model(*a)) or built[-1])
    monkeypatch.setattr(optim, "make_optimizer", leaky)
    with pytest.raises(FrozenChanged, match=r"1 frozen tensor\(s\) changed during training: encoder\.blocks\.1\.mlp\.fc1\.weight"):
        execute_run(tiny_run(data_root, epochs=1), tmp_path, Execution(progress=False))


def test_a_trainable_module_outside_the_forward_fails_the_run(tmp_path, data_root, monkeypatch):
    import dataclasses

    import methods
    spec = methods.get_method("linear_probe")

    def attach_with_an_unused_module(model, cfg):
        model.encoder.unused = nn.Linear(4, 4)  # declared trainable, never called
        return [*spec.attach(model, cfg), model.encoder.unused]

    monkeypatch.setitem(methods.registry._METHODS, "linear_probe",
                        dataclasses.replace(spec, attach=attach_with_an_unused_module))
    with pytest.raises(NeverTrained, match=r"never received a gradient: encoder\.unused\.bias, encoder\.unused\.weight"):
        execute_run(tiny_run(data_root, method="linear_probe", epochs=1), tmp_path, Execution(progress=False))


def test_device_transforms_do_not_change_the_result(tmp_path, data_root):
    """Workers that only decode and draw, with the clip finished on the device, train the same run."""
    cfg = tiny_run(data_root)
    loader = execute_run(cfg, tmp_path / "loader", Execution(progress=False, keep_checkpoint=True))
    device = execute_run(cfg, tmp_path / "device", Execution(progress=False, keep_checkpoint=True,
                                                             device_transforms=True, num_workers=2))
    assert same_metrics(loader, device) and device.extra["transforms"] == "device"
    w_a, w_b = final_weights(tmp_path / "loader", cfg), final_weights(tmp_path / "device", cfg)
    assert all(torch.equal(w_a[k], w_b[k]) for k in w_a)
