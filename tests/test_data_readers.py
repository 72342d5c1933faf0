"""Kinetics-400, SSv2 and list-file trees in their real formats (PyAV-written mp4/webm) read back."""
import csv
import json
from collections import Counter

import numpy as np
import pytest

from bench.data import ClipSpec, DatasetRootError, ListFileError, build_dataset, read_index
from bench.data.synthetic import write_video

SPEC = ClipSpec(num_frames=4, stride=2, input_size=32, short_side_range=(32, 36), test_clips=2)
K400_HEADER = ["label", "youtube_id", "time_start", "time_end", "split"]


def tiny_clip(frames: int = 12, height: int = 32, width: int = 40, value: int = 0) -> np.ndarray:
    clip = np.full((frames, height, width, 3), value, np.uint8)
    clip[:, :, : width // 2, 0] = 200
    return clip


def write_csv(path, rows):
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(K400_HEADER)
        writer.writerows(rows)


@pytest.fixture(scope="module")
def k400_root(tmp_path_factory):
    """train nested by label, val flat; one val clip listed but absent."""
    root = tmp_path_factory.mktemp("k400")
    train = [("abseiling", "aaa111", 10, 20), ("abseiling", "aab222", 0, 10),
             ("passing American football (in game)", "bbb333", 5, 15), ("zumba", "ccc444", 30, 40),
             ("zumba", "ccc555", 1, 11)]
    val = [("zumba", "vvv111", 3, 13), ("abseiling", "vvv222", 100, 110), ("abseiling", "gone00", 0, 10)]
    write_csv(root / "train.csv", [(*row, "train") for row in train])
    write_csv(root / "validate.csv", [(*row, "val") for row in val])
    for label, youtube_id, start, end in train:
        folder = root / "train" / label
        folder.mkdir(parents=True, exist_ok=True)
        write_video(folder / f"{youtube_id}_{start:06d}_{end:06d}.mp4", tiny_clip(), 10)
    (root / "val").mkdir()
    for label, youtube_id, start, end in val[:2]:
        write_video(root / "val" / f"{youtube_id}_{start:06d}_{end:06d}.mp4", tiny_clip(), 10)
    return root


@pytest.fixture(scope="module")
def ssv2_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("ssv2")
    labels = {"Putting something on something": "0", "Pushing something from left to right": "1",
              "Pushing something from right to left": "2"}
    templates = ["Putting [something] on [something]", "Pushing [something] from left to right",
                 "Pushing [something] from right to left"]
    train = [{"id": str(100 + i), "label": "x", "template": templates[i % 3], "placeholders": ["cup"]}
             for i in range(5)]
    val = [{"id": "900", "label": "x", "template": templates[2], "placeholders": ["pen"]}]
    (root / "something-something-v2-labels.json").write_text(json.dumps(labels))
    (root / "something-something-v2-train.json").write_text(json.dumps(train))
    (root / "something-something-v2-validation.json").write_text(json.dumps(val))
    videos = root / "20bn-something-something-v2"
    videos.mkdir()
    for item in train + val:
        write_video(videos / f"{item['id']}.webm", tiny_clip(frames=10), 12, codec="libvpx-vp9",
                    pix_fmt="yuv420p", options={})
    return root


def test_k400_labels_layouts_and_missing(k400_root):
    train = read_index("k400", "train", k400_root)
    assert train.class_names == ["abseiling", "passing American football (in game)", "zumba"]
    assert [e.label for e in train.entries] == [0, 0, 1, 2, 2]
    assert all(e.path.is_file() for e in train.entries) and train.missing == []
    val = read_index("k400", "val", k400_root)
    assert [e.label for e in val.entries] == [2, 0, 0]
    assert [p.name for p in val.missing] == ["gone00_000000_000010.mp4"]


def test_k400_samples_have_recipe_shapes(k400_root):
    train = build_dataset("k400", "train", SPEC, train=True, root=k400_root)
    assert len(train) == 5 and train.num_classes == 3
    assert Counter(e.label for e in train.source_list) == {0: 2, 1: 1, 2: 2}
    sample = train[2]
    assert sample["video"].shape == (3, 4, 32, 32) and sample["label"] == 1 and not sample["replaced"]
    val = build_dataset("k400", "val", SPEC, train=False, root=k400_root)
    assert val[0]["video"].shape == (2, 3, 4, 32, 32)
    assert val[2]["replaced"] and val[2]["source_index"] == 0  # the missing clip: next readable one


def test_ssv2_webm_templates_without_brackets(ssv2_root):
    train = build_dataset("ssv2", "train", ClipSpec(num_frames=4, sampling="uniform", input_size=32,
                                                      augment="ssv2", short_side_range=(32, 36)), True, ssv2_root)
    assert train.class_names[1] == "Pushing something from left to right"
    assert [e.label for e in train.source_list] == [0, 1, 2, 0, 1]
    assert train[1]["video"].shape == (3, 4, 32, 32)
    val = read_index("ssv2", "val", ssv2_root)
    assert [(e.path.name, e.label) for e in val.entries] == [("900.webm", 2)]


def test_list_file_splits_at_last_space(tmp_path):
    (tmp_path / "my videos").mkdir()
    write_video(tmp_path / "my videos" / "clip one.mp4", tiny_clip(), 10)
    (tmp_path / "train.txt").write_text("my videos/clip one.mp4 1\n\n")
    (tmp_path / "val.txt").write_text("my videos/clip one.mp4 0\n")
    dataset = build_dataset("list", "train", SPEC, True, tmp_path)
    assert dataset.num_classes == 2 and dataset.source_list[0].path == tmp_path / "my videos" / "clip one.mp4"
    assert dataset[0]["label"] == 1
    (tmp_path / "val.txt").write_text("my videos/clip one.mp4 zero\n")
    with pytest.raises(ListFileError, match="val.txt:1"):
        read_index("list", "val", tmp_path)


def test_video_ids_are_annotation_names_or_relative_paths(k400_root, ssv2_root, tmp_path):
    """Ids pair predictions across copies: no absolute path, no folder layout, no container suffix."""
    # train is nested by label, val flat: the ids are the clip stems either way
    assert read_index("k400", "train", k400_root).video_ids()[:2] == ["aaa111_000010_000020", "aab222_000000_000010"]
    assert read_index("k400", "val", k400_root).video_ids() == [
        "vvv111_000003_000013", "vvv222_000100_000110", "gone00_000000_000010"]  # the missing clip too
    assert read_index("ssv2", "val", ssv2_root).video_ids() == ["900"]
    (tmp_path / "my videos").mkdir()
    (tmp_path / "val.txt").write_text("my videos/clip one.mp4 0\nother.webm 1\n")
    assert build_dataset("list", "val", SPEC, False, tmp_path).video_ids == ["my videos/clip one", "other"]


def test_root_from_env_and_config_file(k400_root, tmp_path, monkeypatch):
    monkeypatch.delenv("BENCH_K400_ROOT", raising=False)
    monkeypatch.setenv("BENCH_CONFIG", str(tmp_path / "datasets.yaml"))
    (tmp_path / "datasets.yaml").write_text(f"k400: {k400_root}\n")
    assert len(read_index("k400", "train", None).entries) == 5
    monkeypatch.setenv("BENCH_K400_ROOT", str(k400_root))
    (tmp_path / "datasets.yaml").write_text("k400: /nowhere\n")
    assert len(read_index("k400", "train", None).entries) == 5  # env var beats the config file


def test_missing_or_wrong_root_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv("BENCH_SSV2_ROOT", raising=False)
    monkeypatch.setenv("BENCH_CONFIG", str(tmp_path / "absent.yaml"))
    with pytest.raises(DatasetRootError, match="ssv2: no root given") as unset:
        read_index("ssv2", "train", None)
    assert "BENCH_SSV2_ROOT" in str(unset.value) and "labels.json" in str(unset.value)
    with pytest.raises(DatasetRootError) as wrong:
        read_index("k400", "train", tmp_path)
    message = str(wrong.value)
    assert "no train.csv" in message and str(tmp_path) in message and "<youtube_id>_<time_start:06d>" in message
    with pytest.raises(DatasetRootError, match="not a directory"):
        read_index("k400", "train", tmp_path / "nope")


def test_prepared_copies_read_like_the_originals(k400_root, ssv2_root, tmp_path):
    from bench.data.prepare import EncodeSettings, prepare

    settings = EncodeSettings(short_side=32, keyframe_interval=4)
    for name, root in (("k400", k400_root), ("ssv2", ssv2_root)):
        prepare(name, root, tmp_path / name, ("train", "val"), settings, workers=2, progress=False)
        for split in ("train", "val"):
            original, prepared = read_index(name, split, root), read_index(name, split, tmp_path / name)
            assert prepared.class_names == original.class_names
            assert [e.label for e in prepared.entries] == [e.label for e in original.entries]
            assert len(prepared.missing) == len(original.missing)
            assert prepared.video_ids() == original.video_ids()
            assert all(e.path.suffix == ".mp4" and str(e.path).startswith(str(tmp_path)) for e in prepared.entries
                       if e.path not in prepared.missing)
    sample = build_dataset("ssv2", "train", SPEC, True, tmp_path / "ssv2")[0]
    assert sample["video"].shape == (3, 4, 32, 32) and not sample["replaced"]
