"""``python -m bench.data``: scan from the command line, clear root errors, the records of the loader
benchmark and of prepare's."""
import json

import numpy as np
import pytest

from bench.data import ClipSpec
from bench.data.__main__ import main
from bench.data.benchmark import read_frames_decode_all, run_benchmark
from bench.data.fixtures import ClipFormat
from bench.data.decode import read_frames
from bench.data.prepare import EncodeSettings
from bench.data.synthetic import write_video


def test_scan_command_and_root_error(tmp_path, capsys, monkeypatch):
    write_video(tmp_path / "a.mp4", np.zeros((6, 32, 40, 3), np.uint8), 10)
    (tmp_path / "b.mp4").write_bytes(b"not a video")
    (tmp_path / "train.txt").write_text("a.mp4 0\nb.mp4 1\n")
    assert main(["scan", "--dataset", "list", "--root", str(tmp_path), "--out", str(tmp_path / "scan"),
                 "--splits", "train", "--workers", "1"]) == 0
    assert "1 of 2 readable" in capsys.readouterr().out
    assert (tmp_path / "scan" / "train.txt").read_text().split() == [str(tmp_path / "a.mp4"), "0"]
    monkeypatch.delenv("BENCH_K400_ROOT", raising=False)
    assert main(["scan", "--dataset", "k400", "--root", str(tmp_path / "nope"), "--out", str(tmp_path)]) == 2
    assert "k400: the root is not a directory" in capsys.readouterr().err


def test_decode_all_reader_returns_the_same_frames(tmp_path):
    clip = np.stack([np.full((32, 40, 3), 4 * k, np.uint8) for k in range(30)])
    write_video(tmp_path / "v.mp4", clip, 10)
    wanted = np.array([[3, 9, 27]])
    sampled, _ = read_frames(tmp_path / "v.mp4", lambda n: wanted)
    everything, _ = read_frames_decode_all(tmp_path / "v.mp4", lambda n: wanted)
    assert sampled.shape == everything.shape == (1, 3, 32, 40, 3)
    assert np.abs(sampled.astype(int) - everything).max() <= 2


def test_benchmark_record(tmp_path):
    out = tmp_path / "perf" / "data_loader_test.json"
    record = run_benchmark(workers=1, videos=2, clips=6, batch_size=2, tag="test", out=out, rounds=1,
                           spec=ClipSpec(num_frames=4, stride=4, input_size=32, short_side_range=(32, 36)),
                           fmt=ClipFormat(width=96, height=64, fps=10, seconds=(2, 2)),
                           prepared=EncodeSettings(short_side=64), work_dir=tmp_path, cpu_clips=4)
    saved = json.loads(out.read_text())
    assert saved["tag"] == "test" and saved["workers"] == 1 and saved["cpu_count"] >= 1
    for files in ("original", "prepared"):
        row = saved["files"][files]
        assert row["frames"] == 20 and row["suite_clips_per_s"] > 0 and row["decode_all_clips_per_s"] > 0
    files = saved["files"]
    for name, (suite, reference) in {"same_file_original": ("original", "original"),
                                     "same_file_prepared": ("prepared", "prepared"),
                                     "suite_prepared_vs_reference_original": ("prepared", "original")}.items():
        ratios = saved["comparisons"][name]
        assert ratios["cpu_speedup"] == round(files[reference]["decode_all_cpu_ms_per_clip"]
                                              / files[suite]["suite_cpu_ms_per_clip"], 3)
        assert ratios["clips_per_s_speedup"] == round(files[suite]["suite_clips_per_s"]
                                                      / files[reference]["decode_all_clips_per_s"], 3)
    mixed = saved["comparisons"]["suite_prepared_vs_reference_original"]
    assert saved["acceptance"]["value"] == mixed["cpu_speedup"]
    assert saved["acceptance"]["met"] == (mixed["cpu_speedup"] >= 5)
    assert record["path"] == str(out)


def test_prepare_speed_record(tmp_path):
    """``bench-prepare``'s record on small clips: prepare's throughput and CPU, the reads of both
    copies, and the break-even they imply, written where asked."""
    from bench.data.prepare_speed import run_prepare_benchmark
    small = ClipFormat(width=64, height=48, fps=15, seconds=(2, 2))
    out = tmp_path / "perf" / "prepare_test.json"
    record = run_prepare_benchmark(2, 1, tmp_path / "cache", repeats=1, tag="test", out=out, fmt=small)
    assert json.loads(out.read_text())["videos_per_s"] == record["videos_per_s"] > 0
    assert record["videos"] == 2 and record["workers"] == 1 and record["cpu_s_per_video"] > 0
    assert record["wall_s"] > 0 and record["bytes"]["prepared"] > 0 and record["hardware"]["cpu_count"] >= 1
    for copy in ("original", "prepared"):
        assert all(record["read_cpu_ms_per_clip"][copy][split]["min"] > 0 for split in ("train", "eval"))
    for split, saved in record["read_cpu_ms_saved_per_clip"].items():
        expected = None if saved <= 0 else pytest.approx(record["cpu_s_per_video"] * 1000 / saved, rel=0.02)
        assert record["break_even_reads"][split] == expected
