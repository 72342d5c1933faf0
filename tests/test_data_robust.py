"""Broken videos never stop a run; scan and prepare are parallel, resumable and read back alike."""
import json
import logging

import numpy as np
import pytest
import torch

from bench.data import ClipSpec, build_dataset, build_loader, read_index
from bench.data.prepare import EncodeSettings, prepare
from bench.data.scan import scan
from bench.data.synthetic import write_video

SPEC = ClipSpec(num_frames=4, stride=2, input_size=32, short_side_range=(32, 36), test_clips=1)
GOOD = ("good0.mp4", "good1.mp4", "missing.mp4", "empty.mp4", "good2.mp4", "truncated.mp4", "garbage.mp4",
        "good3.mp4")
BROKEN = {2, 3, 5, 6}


@pytest.fixture(scope="module")
def broken_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("broken")
    for i, name in enumerate(GOOD):
        if name.startswith("good"):
            write_video(root / name, np.full((12, 32, 40, 3), 30 * i, np.uint8), 10, pix_fmt="yuv420p", options={})
    write_video(root / "whole.mp4", np.random.default_rng(0).integers(0, 255, (30, 32, 40, 3), dtype=np.uint8), 10)
    data = (root / "whole.mp4").read_bytes()
    (root / "truncated.mp4").write_bytes(data[: len(data) // 2])
    (root / "empty.mp4").write_bytes(b"")
    (root / "garbage.mp4").write_bytes(np.random.default_rng(1).bytes(4096))
    listing = "".join(f"{name} {i % 3}\n" for i, name in enumerate(GOOD))
    (root / "train.txt").write_text(listing)
    (root / "val.txt").write_text(listing)
    (root / "classes.txt").write_text("a\nb\nc\n")
    return root


def epoch(dataset, workers):
    dataset.set_epoch(0)
    loader = build_loader(dataset, batch_size=3, num_workers=workers, shuffle=False, seed=0)
    return {key: torch.cat([batch[key] for batch in loader]) for key in ("video", "index", "source_index", "replaced")}


def test_epoch_completes_with_deterministic_replacements(broken_root):
    dataset = build_dataset("list", "train", SPEC, True, broken_root, seed=1)
    assert [p.name for p in dataset.missing] == ["missing.mp4"]
    with_workers = epoch(dataset, workers=2)
    assert with_workers["index"].tolist() == list(range(len(GOOD)))
    assert int(with_workers["replaced"].sum()) == len(BROKEN)
    assert with_workers["source_index"].tolist() == [0, 1, 4, 4, 4, 7, 7, 7]  # the next readable video
    in_process = epoch(build_dataset("list", "train", SPEC, True, broken_root, seed=1), workers=0)
    for key in with_workers:
        assert torch.equal(with_workers[key], in_process[key])  # same result whatever each worker already knew


def test_each_broken_video_is_logged_once(broken_root, caplog):
    dataset = build_dataset("list", "val", SPEC, False, broken_root)
    with caplog.at_level(logging.WARNING, logger="bench.data"):
        for _ in range(2):
            assert sum(dataset[i]["replaced"] for i in range(len(dataset))) == len(BROKEN)
    logged = [r.getMessage() for r in caplog.records if r.getMessage().startswith("broken video")]
    assert sorted(m.split()[2].rsplit("/", 1)[1] for m in logged) == ["empty.mp4", "garbage.mp4", "truncated.mp4"]


def test_a_video_only_the_other_reader_decodes_is_read_by_it_not_replaced(broken_root, caplog, monkeypatch):
    """A planted defect of the loader's reader on good1.mp4: decord reads it with the sample's own draw
    (the frames the reader would have given), the sample is marked a fallback, logged once, not broken."""
    from bench.data import VideoDataset
    from bench.data.decode import VideoDecodeError, read_frames

    def reader_with_a_defect(path, choose, cache=None):
        if path.name == "good1.mp4":
            raise VideoDecodeError(path, IndexError("a planted reader defect"))
        return read_frames(path, choose, cache)

    honest = build_dataset("list", "train", SPEC, True, broken_root, seed=1)
    expected = [honest[i]["video"] for i in range(len(GOOD))]
    monkeypatch.setattr(VideoDataset, "frame_reader", staticmethod(reader_with_a_defect))
    dataset = build_dataset("list", "train", SPEC, True, broken_root, seed=1)
    with caplog.at_level(logging.WARNING, logger="bench.data"):
        for _ in range(2):
            items = [dataset[i] for i in range(len(GOOD))]
    assert [item["fallback"] for item in items] == [name == "good1.mp4" for name in GOOD]
    assert [int(item["source_index"]) for item in items] == [0, 1, 4, 4, 4, 7, 7, 7]  # good1 is not replaced
    assert all(torch.equal(item["video"], frames) for item, frames in zip(items, expected))
    assert sorted(dataset.broken.errors) == sorted(BROKEN) and list(dataset.fallbacks.errors) == [1]
    logged = [r.getMessage() for r in caplog.records if r.getMessage().startswith("reader fallback")]
    assert len(logged) == 1 and "good1.mp4" in logged[0] and "a planted reader defect" in logged[0]


def test_scan_writes_cleaned_list_and_resumes(broken_root, tmp_path):
    report = scan("list", "train", broken_root, tmp_path, workers=2, progress=False)
    assert (report["listed"], report["readable"], report["broken"]) == (8, 4, 4)
    assert "missing on disk" in report["errors"][str(broken_root / "missing.mp4")]
    cleaned = read_index("list", "train", tmp_path)
    assert [e.path.name for e in cleaned.entries] == ["good0.mp4", "good1.mp4", "good2.mp4", "good3.mp4"]
    assert cleaned.class_names == ["a", "b", "c"]
    progress = tmp_path / "scan_train.progress.jsonl"
    lines = progress.read_text().splitlines()
    progress.write_text("\n".join(lines[:5]) + "\n" + lines[5][:10])  # killed while writing record 6
    again = scan("list", "train", broken_root, tmp_path, workers=2, progress=False)
    assert again["readable"] == 4 and again["broken"] == 4
    after_cut = [json.loads(line) for line in progress.read_text().splitlines()[6:]]
    assert len(after_cut) == 3  # only the three unfinished videos were decoded again


def test_prepare_reencodes_and_readers_accept_the_copy(broken_root, tmp_path):
    summary = prepare("list", broken_root, tmp_path / "prepared", ("train",),
                      EncodeSettings(short_side=32, keyframe_interval=4), workers=2, progress=False)
    assert summary["videos"] == 7 and sorted(summary["failed"]) == [str(broken_root / n) for n in
                                                                    ("empty.mp4", "garbage.mp4", "truncated.mp4")]
    assert summary["encoded_now"] == 7 and summary["videos_per_s"] > 0 and summary["workers"] == 2
    prepared = build_dataset("list", "train", SPEC, True, tmp_path / "prepared")
    assert prepared.class_names == ["a", "b", "c"] and len(prepared) == len(GOOD)
    sample = prepared[1]
    assert not sample["replaced"] and sample["video"].shape == (3, 4, 32, 32)
    again = prepare("list", broken_root, tmp_path / "prepared", ("train",),
                    EncodeSettings(short_side=32, keyframe_interval=4), workers=2, progress=False)
    assert again["failed"] == summary["failed"]  # resumed: nothing left to do, same outcome
    assert again["encoded_now"] == 0 and again["videos_per_s"] is None


def test_broken_validation_videos_are_skipped_not_scored_as_their_stand_in():
    """Row 1's video was broken and replaced by video 2 for batching; the metrics leave row 1 out
    (scoring it with video 2's label would count video 2 twice)."""
    import numpy as np

    from bench.engine.evaluate import Evaluation
    evaluation = Evaluation(source_index=np.array([0, 2, 2, 3]), labels=np.array([0, 1, 1, 2]),
                            topk_index=np.array([[0, 1], [1, 0], [1, 0], [0, 2]]),
                            topk_prob=np.full((4, 2), 0.5, dtype=np.float32), num_classes=3,
                            fallback=np.zeros(4, bool))
    metrics = evaluation.metrics()
    assert (metrics["videos"], metrics["skipped"]) == (3, 1) and evaluation.broken == {1}
    assert metrics["top1"] == pytest.approx(100 * 2 / 3)  # rows 0 and 2 right, row 3 wrong
    assert metrics["per_class_top1"] == [100.0, 100.0, 0.0]
