"""The end-to-end benchmark's harness on a CPU smoke setting: real fixtures, the real engine, full records."""
from bench.data.fixtures import ClipFormat
from bench.timing.e2e import E2ESpec, run_all


def test_e2e_harness_writes_one_complete_record_per_format_and_method(tmp_path):
    small = {"k400": ClipFormat(width=48, height=40, fps=15, seconds=(3, 3)),
             "ssv2": ClipFormat(width=48, height=40, fps=12, seconds=(2, 3), codec="libvpx-vp9", container="webm",
                                options=(("cpu-used", "8"),))}
    spec = E2ESpec(train_clips=12, val_videos=8, distinct=2, batch_size=4, workers=1, skip_steps=1,
                   backbone="vit_tiny_test", device="cpu", input_size=32, fixture_format=small)
    found = run_all(["k400_original", "ssv2"], ["full_ft"], spec, tmp_path / "cache", tmp_path / "out")
    assert [(r["format"], r["method"]) for r in found] == [("k400_original", "full_ft"), ("ssv2", "full_ft")]
    for r in found:
        assert (tmp_path / "out" / f"e2e_{r['format']}_full_ft.json").is_file()
        assert r["e2e_clips_per_s"] > 0 and r["step_clips_per_s"] > 0 and r["cpu_ms_per_clip"] >= 0
        assert abs(r["ratio"] - r["e2e_clips_per_s"] / r["step_clips_per_s"]) < 0.01 * r["ratio"]
        assert r["eval_views"] == 3 and r["eval_clips_per_s"] > 0 and r["workers"] == 1
        assert r["gpu_busy_fraction"] is None and r["transforms"] == "device" and r["timed_steps"] == 2
        assert r["decoder"] == "pyav_sampled" and r["run_gpu_busy_fraction"] is None
        assert 0 <= r["data_wait_fraction"] <= 1
        assert r["loader_alone"]["train"]["clips_per_s"] > 0 and r["loader_alone"]["eval"]["clips_per_s"] > 0 and set(r["cores_by_kind"]) >= {"user", "system", "steal"}
