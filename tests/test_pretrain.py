"""Pre-training the synthetic suite's image ViT: deterministic, cached by config, loadable by methods."""
import dataclasses
import subprocess
import sys

from bench.engine.pretrain import DEFAULT, PretrainConfig, ensure_pretrained, pretrain_dir
from methods import BackboneConfig, build_model

TINY = PretrainConfig(backbone=BackboneConfig("pretrain_test_vit", img_size=32, patch_size=8, width=32, depth=1,
                                              heads=2),
                      images=320, epochs=2, warmup_epochs=1, batch_size=64)


def test_pretraining_is_deterministic_and_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path / "a"))
    first = ensure_pretrained(TINY, progress=False)
    assert first.parent == pretrain_dir(TINY) and first.parent.name.startswith("pretrain_test_vit-")
    stamp = first.stat().st_mtime_ns
    assert ensure_pretrained(TINY, progress=False) == first and first.stat().st_mtime_ns == stamp  # cached
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path / "b"))
    second = ensure_pretrained(TINY, progress=False)
    assert second != first and second.read_bytes() == first.read_bytes()
    other = ensure_pretrained(dataclasses.replace(TINY, seed=1), progress=False)
    assert other.parent != second.parent and other.read_bytes() != second.read_bytes()

    model = build_model("linear_probe", TINY.backbone, num_classes=3, num_frames=2, weights=str(first))
    assert model.parameter_counts()[0] == 32 * 3 + 3


def test_reference_names_the_config():
    assert DEFAULT.reference == f"pretrain:synth_vit-{DEFAULT.digest()}"
    assert dataclasses.replace(DEFAULT, epochs=DEFAULT.epochs + 1).digest() != DEFAULT.digest()


def test_cli_help():
    out = subprocess.run([sys.executable, "-m", "bench.pretrain", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "synthetic stills" in out.stdout
