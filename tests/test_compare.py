"""bench.compare: two result folders paired video by video; unpaired comparisons refused."""
from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from record_factory import attach_predictions, make_predictions, make_record

from bench import compare
from bench.reporting.comparison import compare_folders
from bench.store.records import write_record

REPO_ROOT = Path(__file__).resolve().parents[1]
IDS = [f"clip{i:04d}" for i in range(400)]


def _right(seed: int, extra: int = 0) -> np.ndarray:
    """About 60% right, the same videos for a seed in both folders, plus `extra` more."""
    correct = np.random.default_rng(seed).random(len(IDS)) < 0.6
    correct[np.flatnonzero(~correct)[:extra]] = True
    return correct


def _folder(path: Path, rows: dict[int, tuple[list[str], np.ndarray]], method: str = "st_adapter") -> Path:
    for seed, (ids, correct) in rows.items():
        attach_predictions(path, make_record(method, "synth_motion", seed, 0.0), make_predictions(correct, ids=ids))
    return path


def test_a_known_difference_between_two_folders_on_the_same_list(tmp_path: Path, capsys):
    a = _folder(tmp_path / "a", {s: (IDS, _right(s)) for s in (0, 1)})
    b = _folder(tmp_path / "b", {s: (IDS, _right(s, extra=20)) for s in (0, 1)})  # +20 of 400: +5.00 points
    [c] = compare_folders(a, b).compared
    assert c.same_list and c.same_config and (c.shared, c.only_a, c.only_b) == (400, 0, 0)
    assert c.result.difference == pytest.approx(5.0) and c.top1_b - c.top1_a == pytest.approx(5.0)
    assert c.result.distinguishable and c.seeds == (0, 1)
    assert compare.main([str(a), str(b)]) == 0
    out = capsys.readouterr().out
    assert "| synth_motion · synth_vit · synth" in out and "+5.00" in out and "400" in out


def test_copies_that_differ_pair_on_the_videos_they_share(tmp_path: Path):
    """B lacks 10 of A's videos, holds 5 of its own and lists them in another order."""
    correct = {s: _right(s) for s in (0, 1)}
    a = _folder(tmp_path / "a", {s: (IDS, correct[s]) for s in (0, 1)})
    order = np.random.default_rng(9).permutation(390)
    b_ids = [IDS[i] for i in order] + [f"new{i}" for i in range(5)]
    # B is right exactly where A is, on the shared videos, except on one more video per seed
    b_rows = {}
    for s in (0, 1):
        b_correct = np.concatenate([correct[s][order], np.ones(5, dtype=bool)])
        b_correct[np.flatnonzero(~b_correct)[0]] = True
        b_rows[s] = (b_ids, b_correct)
    b = _folder(tmp_path / "b", b_rows)
    [c] = compare_folders(a, b).compared
    assert not c.same_list and (c.shared, c.only_a, c.only_b) == (390, 10, 5)
    assert c.top1_a == pytest.approx(100 * np.mean([correct[s][:390].mean() for s in (0, 1)]))
    assert c.result.difference == pytest.approx(100 / 390)  # one video of 390 in each seed


def test_broken_videos_are_left_out_of_the_pairing(tmp_path: Path):
    a = _folder(tmp_path / "a", {0: (IDS, _right(0))})
    b = tmp_path / "b"
    predictions = make_predictions(_right(0), ids=IDS)
    source = predictions.source_index.copy()
    source[7] = 8  # video 7 could not be read in B: video 8 stood in for it
    predictions = dataclasses.replace(predictions, source_index=source)
    attach_predictions(b, make_record("st_adapter", "synth_motion", 0, 0.0), predictions)
    [c] = compare_folders(a, b).compared
    assert c.shared == 399 and c.result.difference == 0.0 and c.result.p_value == 1.0


def test_an_unpaired_comparison_is_refused(tmp_path: Path, capsys):
    a = _folder(tmp_path / "a", {0: (IDS, _right(0))})
    b = _folder(tmp_path / "b", {0: ([f"other{i}" for i in range(400)], _right(0))})
    assert compare.main([str(a), str(b)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "refusing to compare" in captured.err and "unpaired: the validation lists differ" in captured.err
    assert "share no usable video" in captured.err and "st_adapter on synth_motion" in captured.err


def test_records_without_per_video_outputs_or_common_seeds_are_refused(tmp_path: Path, capsys):
    a = _folder(tmp_path / "a", {0: (IDS, _right(0))})
    old = tmp_path / "old"
    write_record(old, make_record("st_adapter", "synth_motion", 0, 60.0))
    assert compare.main([str(a), str(old)]) == 2
    assert "no per-video outputs in B" in capsys.readouterr().err
    other_seed = _folder(tmp_path / "seed1", {1: (IDS, _right(1))})
    assert compare.main([str(a), str(other_seed)]) == 2
    assert "pairing needs the same seeds" in capsys.readouterr().err
    elsewhere = _folder(tmp_path / "method", {0: (IDS, _right(0))}, method="full_ft")
    assert compare.main([str(a), str(elsewhere)]) == 2
    assert "no configuration in common" in capsys.readouterr().err


def test_command_line_entry_point(tmp_path: Path):
    a = _folder(tmp_path / "a", {0: (IDS, _right(0))})
    done = subprocess.run([sys.executable, "-m", "bench.compare", str(a), str(a)], capture_output=True,
                          text=True, cwd=REPO_ROOT)
    assert done.returncode == 0, done.stderr
    assert "+0.00" in done.stdout and "| 1.000 |" in done.stdout
