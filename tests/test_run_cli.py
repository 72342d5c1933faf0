"""``python -m bench.run``: help, bad input (exit 2, nothing written), the dry run's DESIGN.md §3
numbers without data or weights, and a small real grid through the CLI."""
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bench.run import main
from bench.store.records import load_records


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """No dataset roots configured, caches in tmp: what a fresh machine has."""
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("BENCH_CONFIG", str(tmp_path / "no-datasets.yaml"))
    for name in ("K400", "SSV2", "LIST"):
        monkeypatch.delenv(f"BENCH_{name}_ROOT", raising=False)
    return tmp_path


def test_help_explains_the_options():
    out = subprocess.run([sys.executable, "-m", "bench.run", "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    for option in ("--methods", "--datasets", "--backbone", "--weights", "--seeds", "--executor",
                   "--slurm-profile", "--dry-run", "--results", "--force", "--epochs", "--lr"):
        assert option in out.stdout
    assert "embedded default" in out.stdout


def _bad_profile(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("partition: gpu\ngpus_per_node: many\n")
    return ["--executor", "slurm", "--slurm-profile", str(path)]


def _weights_file(tmp_path):
    path = tmp_path / "ViT-B-16.pt"
    path.write_bytes(b"not read before the data check")
    return str(path)


@pytest.mark.parametrize("make_args, message", [
    (lambda t: ["--methods", "st_adapter,nope"], "unknown method(s) ['nope']"),
    (lambda t: ["--datasets", "k401"], "unknown dataset(s) ['k401']"),
    (lambda t: ["--datasets", "k400", "--methods", "linear_probe"], "needs pre-trained weights"),
    (lambda t: ["--datasets", "k400", "--weights", str(t / "missing.pt")], "no such file"),
    (lambda t: ["--datasets", "k400", "--weights", _weights_file(t)], "k400: no root given"),
    (lambda t: ["--datasets", "ssv2", "--root", f"ssv2={t / 'nowhere'}", "--weights", _weights_file(t)],
     "the root is not a directory"),
    (_bad_profile, "key 'gpus_per_node'"),
    (lambda t: ["--seeds", "0"], "need at least one seed"),
    (lambda t: ["--method-option", "st_adapter.width=-3", "--methods", "st_adapter"], "width=-3"),
    (lambda t: ["--evaluations", "0"], "at least its final evaluation"),
    (lambda t: ["--log-every", "0"], "--log-every 0: must be >= 1"),
    (lambda t: ["--tune", "width", "--methods", "linear_probe,st_adapter"],
     "['linear_probe'] declare no tunable option 'width'"),
    (lambda t: ["--tune", "lr", "--tune-points", "4"], "need an odd number >= 3"),
    (lambda t: ["--tune", "lr", "--tune-holdout", "0.7"], "must be a number in (0, 0.5]"),
    (lambda t: ["--tune-seeds", "3"], "apply to --tune"),
])
def test_bad_input_exits_2_and_writes_nothing(isolated, capsys, make_args, message):
    results = isolated / "results"
    assert main([*make_args(isolated), "--results", str(results)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err
    assert not results.exists()


def test_tensorboard_without_the_package_is_a_clear_error(isolated, capsys):
    if importlib.util.find_spec("tensorboard") is not None:
        pytest.skip("tensorboard is installed here; test_tensorboard_event_files covers the flag")
    assert main(["--tensorboard", str(isolated / "tb"), "--results", str(isolated / "results")]) == 2
    err = capsys.readouterr().err
    assert "--tensorboard needs the tensorboard package" in err and "petl-video-bench[tensorboard]" in err
    assert not (isolated / "results").exists()


@pytest.mark.slow
def test_dry_run_prints_design_counts_without_data_or_weights(isolated, capsys):
    argv = ["--dry-run", "--methods", "st_adapter,full_ft", "--datasets", "k400,ssv2", "--backbone",
            "clip_vit_b16", "--seeds", "1", "--results", str(isolated / "results")]
    assert main(argv) == 0
    out = capsys.readouterr().out
    rows = {(m.group(1), m.group(2)): m for m in re.finditer(
        r"^(k400|ssv2)\s+(st_adapter|full_ft)\s+0\s+\S+\s+([\d,]+)\s+([\d,]+)\s+([\d.]+) x (\d)", out, re.M)}
    trainable = {key: int(m.group(3).replace(",", "")) for key, m in rows.items()}
    assert trainable == {("k400", "st_adapter"): 7_417_744, ("k400", "full_ft"): 86_107_024,
                         ("ssv2", "st_adapter"): 14_354_094, ("ssv2", "full_ft"): 85_933_230}
    st_k400 = rows[("k400", "st_adapter")]
    assert float(st_k400.group(5)) == pytest.approx(151.6, rel=0.01) and st_k400.group(6) == "3"
    assert rows[("ssv2", "full_ft")].group(6) == "3"
    assert "GPU-hours" in out and "nominal sizes" in out
    assert not (isolated / "results").exists()


def test_tuning_dry_run_lists_every_trial_and_writes_nothing(isolated, capsys):
    argv = ["--dry-run", "--tune", "lr", "--tune-points", "3", "--methods", "linear_probe,full_ft", "--datasets",
            "synth_motion", "--seeds", "3", "--results", str(isolated / "results")]
    assert main(argv) == 0
    out = capsys.readouterr().out
    trials = re.findall(r"^synth_motion\s+(linear_probe|full_ft) \(trial lr=([\d.]+)\)\s+([01])\s", out, re.M)
    assert sorted(trials) == sorted((m, lr, s) for m, lrs in (("linear_probe", ("0.032", "0.1", "0.32")),
                                                               ("full_ft", ("0.0032", "0.01", "0.032")))
                                    for lr in lrs for s in "01")
    assert "12 runs" in out and "the 6 runs of the grid at their declared values" in out
    assert "for each of the 2 configurations whose sweep chooses another point, 3 more" in out
    assert not (isolated / "results").exists()


@pytest.mark.slow
def test_small_grid_through_the_cli(isolated, world_cache, monkeypatch, capsys):
    monkeypatch.setenv("BENCH_CACHE", str(world_cache))
    results = isolated / "results"
    argv = ["--datasets", "synth_motion", "--methods", "linear_probe,st_adapter", "--backbone", "vit_tiny_test",
            "--weights", "random", "--recipe", "synth", "--seeds", "2", "--epochs", "1", "--batch-size", "64",
            "--executor", "debug",
            "--results", str(results)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    records = load_records(results)
    assert sorted((r.method, r.seed) for r in records) == [("linear_probe", 0), ("linear_probe", 1),
                                                           ("st_adapter", 0), ("st_adapter", 1)]
    assert all(r.recipe == "synth(batch_size=64,epochs=1)" for r in records)
    assert re.search(r"synth_motion\s+linear_probe\s+2\s+[\d.]+ ± [\d.]+", out)  # the summary table
    assert main(argv) == 0
    assert "4 of 4 runs already have records" in capsys.readouterr().out
    assert len(load_records(results)) == 4


def _k400_root(tmp: Path, val_rows: str) -> Path:
    root = tmp / "k400"
    (root / "train").mkdir(parents=True)
    (root / "val").mkdir()
    header = "label,youtube_id,time_start,time_end,split\n"
    (root / "train.csv").write_text(header + "abseiling,aaa111,10,20,train\n")
    (root / "validate.csv").write_text(header + val_rows)
    return root


@pytest.mark.parametrize("make_root, where, problem", [
    (lambda t: _k400_root(t, "abseiling,vvv111,3,13,val\nabseiling,vvv222,100\n"), "validate.csv:3",
     "field(s) ['time_end'] missing or empty"),
    (lambda t: _k400_root(t, "abseiling,vvv111,three,13,val\n"), "validate.csv:2", "time_start 'three' is not a number"),
])
def test_a_malformed_kinetics_row_names_its_file_and_line(isolated, capsys, make_root, where, problem):
    root = make_root(isolated)
    argv = ["--datasets", "k400", "--root", f"k400={root}", "--weights", _weights_file(isolated), "--methods",
            "linear_probe", "--results", str(isolated / "results")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and where in err and problem in err and "fix or delete the row" in err
    assert len(err.strip().splitlines()) == 1


def test_a_list_file_line_without_a_label_is_an_input_error(isolated, capsys):
    (isolated / "videos").mkdir()
    (isolated / "train.txt").write_text("videos/a.mp4 0\n")
    (isolated / "val.txt").write_text("videos/a.mp4\n")
    argv = ["--datasets", "list", "--recipe", "k400", "--root", f"list={isolated}", "--weights", _weights_file(isolated),
            "--methods",
            "linear_probe", "--results", str(isolated / "results")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "val.txt:1" in err and "expected 'relative/path label'" in err


def test_every_missing_dataset_root_is_named_at_once(isolated, capsys):
    argv = ["--datasets", "k400,ssv2", "--weights", _weights_file(isolated), "--methods", "linear_probe",
            "--results", str(isolated / "results")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "2 datasets are not found" in err and "k400: no root given" in err and "ssv2: no root given" in err


def test_frames_are_normalised_with_the_backbones_statistics(isolated, capsys):
    from bench.config import RECIPES
    from bench.grid import normalised_for
    from methods import get_backbone_config
    clip_recipe = normalised_for(RECIPES["k400"], get_backbone_config("clip_vit_b16"))
    augreg = normalised_for(RECIPES["k400"], get_backbone_config("vit_b16_in21k"))
    assert clip_recipe is RECIPES["k400"]  # CLIP's statistics are the recipe's default
    assert augreg.clip.mean == augreg.clip.std == (0.5, 0.5, 0.5) and augreg.name == "k400"


def _list_root(tmp: Path, videos: dict[str, bytes | None]) -> Path:
    """A list dataset whose train and val lists both hold ``videos`` (None: a real 12-frame clip)."""
    import numpy as np

    from bench.data.synthetic import write_video
    root = tmp / "list"
    root.mkdir()
    for name, content in videos.items():
        if content is None:
            write_video(root / name, np.full((12, 32, 40, 3), 90, np.uint8), 10)
        else:
            (root / name).write_bytes(content)
    listing = "".join(f"{name} {i % 2}\n" for i, name in enumerate(videos))
    (root / "train.txt").write_text(listing)
    (root / "val.txt").write_text(listing)
    return root


def _list_grid(root: Path, results: Path, *extra: str) -> list[str]:
    return ["--datasets", "list", "--root", f"list={root}", "--methods", "linear_probe", "--backbone", "synth_vit",
            "--weights", "random", "--recipe", "synth", "--seeds", "1", "--results", str(results), *extra]


def test_a_dataset_no_video_of_which_decodes_fails_before_any_job(isolated, capsys):
    """Exit 2 and one line naming the list, the first file and the fix; no job, nothing written."""
    root = _list_root(isolated, {"a.mp4": b"not a video", "b.mp4": b""})
    results = isolated / "results"
    assert main(_list_grid(root, results)) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: list train: none of the 2 videos listed in {root / 'train.txt'} can be decoded "
                          f"(first: {root / 'a.mp4'}: ")
    assert "python -m bench.data scan --dataset list" in err and len(err.strip().splitlines()) == 1
    assert not results.exists()


def test_fewer_training_clips_than_one_batch_fails_before_any_job(isolated, capsys):
    root = _list_root(isolated, {"a.mp4": None, "b.mp4": None})
    results = isolated / "results"
    assert main(_list_grid(root, results, "--batch-size", "4")) == 2
    err = capsys.readouterr().err
    assert err == "error: list: 2 training clips is fewer than one global batch (4); lower --batch-size\n"
    assert not results.exists()


@pytest.mark.parametrize("kind", ["reference save_model file", "suite run checkpoint"])
def test_trainable_weights_given_as_weights_are_refused_before_any_job(isolated, capsys, kind):
    """--weights FILE where FILE holds a method's trainable weights only: exit 2 before any job, saying
    what the file is and that it belongs in --init beside --weights <CLIP file>."""
    from bench.engine.execution import Execution
    from bench.engine.loop import execute_run, work_dir
    from tests.engine_helpers import tiny_run
    from tests.test_weights import _reference_save_model, random_st_adapter

    if kind == "reference save_model file":
        trained = isolated / "checkpoint-11.pth"
        _reference_save_model(random_st_adapter({"width": 16}), trained)
        what = "only ST-Adapter adapters and a classifier, in the reference code's save_model layout"
    else:
        cfg = tiny_run(isolated / "world", epochs=1)
        execute_run(cfg, isolated / "runs", Execution(progress=False, keep_checkpoint=True))
        trained = work_dir(isolated / "runs", cfg) / "checkpoint.pt"
        what = "only a method's trainable weights, in this suite's run checkpoint (with its optimizer and progress)"
    root = _list_root(isolated, {"a.mp4": None, "b.mp4": None})
    results = isolated / "results"
    argv = _list_grid(root, results, "--methods", "st_adapter", "--backbone", "vit_tiny_test", "--weights", str(trained),
                      "--batch-size", "2")
    capsys.readouterr()  # what making the file printed
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: weights file {str(trained)!r} holds {what}: ") and "no image tower" in err
    assert f"It belongs in --init {trained}, beside --weights <CLIP file>" in err
    assert len(err.strip().splitlines()) == 1 and not results.exists()


def test_an_init_checkpoint_of_other_options_is_refused_before_any_job(isolated, capsys):
    """--init a width-16 ST-Adapter checkpoint for a width-8 run: exit 2 before any job, naming the keys."""
    from tests.test_weights import _reference_save_model, random_st_adapter

    trained = isolated / "checkpoint-11.pth"
    _reference_save_model(random_st_adapter({"width": 16, "positions": ("pre_attn", "pre_mlp")}), trained)
    root = _list_root(isolated, {"a.mp4": None, "b.mp4": None})
    results = isolated / "results"
    argv = _list_grid(root, results, "--methods", "st_adapter", "--backbone", "vit_tiny_test", "--init", str(trained),
                      "--method-option", "st_adapter.width=8", "--batch-size", "2")
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: --init {str(trained)!r}: ") and "(16, 64) vs (8, 64) here" in err
    assert "the checkpoint is for other method options" in err and not results.exists()
