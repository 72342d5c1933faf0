"""Recipes and run identity: DESIGN.md §4 presets, validation, hashes that name exactly the result."""
import dataclasses
import shutil
from pathlib import Path

import pytest

from bench.config import K400, SSV2, SYNTH, SYNTH_WORLD, ConfigError, RunConfig, get_recipe


def test_presets_follow_the_reference_recipe():
    for recipe, epochs, batch in ((K400, 12, 192), (SSV2, 50, 256)):
        assert (recipe.epochs, recipe.warmup_epochs, recipe.batch_size) == (epochs, 2, batch)
        assert (recipe.base_lr, recipe.weight_decay, recipe.betas) == (1e-3, 0.01, (0.9, 0.999))
        assert recipe.peak_lr("st_adapter") == pytest.approx(1e-3 * batch / 256)
        assert recipe.base_lr_for("full_ft") < recipe.base_lr  # full fine-tuning has its own lr
        assert recipe.clip.num_frames == 8 and recipe.clip.input_size == 224 and recipe.head_dropout == 0.5
    assert (K400.clip.sampling, K400.clip.stride, K400.clip.augment, K400.clip.views) == ("dense", 16, "k400", 3)
    assert K400.clip.short_side_range == (224, 258) and (K400.clip.test_clips, K400.clip.test_crops) == (3, 1)
    assert (SSV2.clip.sampling, SSV2.clip.augment, SSV2.clip.test_clips, SSV2.clip.test_crops) == ("uniform", "ssv2", 1, 3)
    assert K400.options_for("st_adapter") == {"preset": "12x384"}
    assert SSV2.options_for("st_adapter", {"width": 128}) == {"preset": "24x384", "width": 128}


def test_bad_recipe_values_name_the_field():
    with pytest.raises(ConfigError, match="warmup_epochs"):
        dataclasses.replace(K400, warmup_epochs=20)
    with pytest.raises(ConfigError, match="precision"):
        K400.with_overrides(precision="fp8")
    with pytest.raises(ConfigError, match="unknown recipe"):
        get_recipe("k600")


def test_overrides_rename_the_recipe_only_when_something_changes():
    assert K400.with_overrides(epochs=12, batch_size=None) is K400
    quick = K400.with_overrides(epochs=1, warmup_epochs=0, num_frames=4)
    assert quick.name == "k400(epochs=1,num_frames=4,warmup_epochs=0)"
    assert quick.clip.num_frames == 4 and quick.clip.stride == 16


@pytest.fixture()
def weights(tmp_path, monkeypatch) -> Path:
    """A weights file, and the digest cache in tmp (the digest is cached by path, size and mtime)."""
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path / "cache"))
    path = tmp_path / "models" / "a" / "model.safetensors"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"weights A" * 1000)
    return path


def _run(weights: Path | str = "random", **changes) -> RunConfig:
    base = dict(method="st_adapter", dataset="synth_motion", backbone="synth_vit", recipe=SYNTH, seed=0,
                weights=str(weights), method_options={"width": 48}, synth=SYNTH_WORLD)
    return RunConfig(**{**base, **changes})


def test_hash_names_the_result_not_the_location(weights: Path, tmp_path: Path):
    reference = _run(weights)
    assert len(reference.hash()) == 12
    assert _run(weights, data_root="/elsewhere").hash() == reference.hash()
    moved = tmp_path / "mnt" / "b" / "renamed.safetensors"  # the same file, mounted elsewhere
    moved.parent.mkdir(parents=True)
    shutil.copy(weights, moved)
    assert _run(moved).hash() == reference.hash()
    other = tmp_path / "models" / "b" / "model.safetensors"  # every hub file has this name
    other.parent.mkdir(parents=True)
    other.write_bytes(b"weights B" * 1000)
    for changed in (_run(weights, seed=1), _run(weights, method="adapter"), _run(weights, method_options={"width": 32}),
                    _run(weights, recipe=SYNTH.with_overrides(base_lr=0.2)), _run(other),
                    _run(weights, synth=dataclasses.replace(SYNTH_WORLD, train_per_class=8)),
                    _run(weights, precision="bf16"), _run(weights, data={"val_list_sha256": "x", "prepared": None}),
                    _run(weights, data={"val_list_sha256": "x", "prepared": {"settings": {"short_side": 258}}})):
        assert changed.hash() != reference.hash()


def test_a_changed_weights_file_is_hashed_again(weights: Path):
    before = _run(weights).hash()
    weights.write_bytes(b"retrained" * 1000)
    assert _run(weights).hash() != before


def test_the_method_version_is_part_of_the_identity(monkeypatch):
    import methods
    spec = methods.get_method("st_adapter")
    before = _run().hash()
    monkeypatch.setitem(methods.registry._METHODS, "st_adapter", dataclasses.replace(spec, version=spec.version + 1))
    assert _run().identity()["method_version"] == spec.version + 1 and _run().hash() != before


def test_config_round_trips_through_its_record_form():
    cfg = _run(data_root="/data", precision="bf16", data={"val_list_sha256": "x", "prepared": None})
    again = RunConfig.from_dict(cfg.to_dict())
    assert again == cfg and again.hash() == cfg.hash()
    assert cfg.name.startswith("synth_motion__synth_vit__st_adapter__s0__")


def test_method_rules_come_from_the_method_files():
    from bench.config import RECIPE_FAMILIES, SYNTH_MOTION
    from methods import get_method, list_methods
    for method in list_methods():  # a rule for a family no recipe has would never apply
        spec = get_method(method)
        assert set(spec.base_lr) | set(spec.recipe_options) <= RECIPE_FAMILIES, method
    assert SYNTH.base_lr_for("full_ft") == SYNTH_MOTION.base_lr_for("full_ft") == get_method("full_ft").base_lr["synth"]
    assert SYNTH.options_for("prompt_tuning") == get_method("prompt_tuning").recipe_options["synth"]
    assert SYNTH.base_lr_for("st_adapter") == SYNTH.base_lr  # no rule: the recipe's lr


def test_a_run_records_the_recipe_as_its_method_runs_it():
    full_ft, st_adapter = _run(method="full_ft"), _run()
    assert full_ft.recipe.base_lr == SYNTH.base_lr_for("full_ft") and not full_ft.recipe.method_lr
    assert full_ft.peak_lr == pytest.approx(SYNTH.base_lr_for("full_ft") * SYNTH.batch_size / 256)
    assert st_adapter.recipe.base_lr == SYNTH.base_lr and st_adapter.recipe.name == full_ft.recipe.name == "synth"
    assert full_ft.to_dict()["recipe"]["base_lr"] == SYNTH.base_lr_for("full_ft")
    fixed = SYNTH.with_overrides(base_lr=0.2, method_lr=False)  # what --lr does: every method at 0.2
    assert _run(method="full_ft", recipe=fixed).peak_lr == _run(recipe=fixed).peak_lr == pytest.approx(0.2 * 32 / 256)
    assert fixed.name == "synth(base_lr=0.2,method_lr=False)"


def test_another_methods_rules_leave_a_runs_identity_alone(monkeypatch):
    """Adding a method (with its own lr and options for the synthetic recipes) renames no other run."""
    from dataclasses import dataclass as frozen

    from methods import MethodConfig, register_method, registry
    before = _run().hash()
    monkeypatch.setattr(registry, "_METHODS", dict(registry._METHODS))

    @frozen(frozen=True)
    class ExtraConfig(MethodConfig):
        width: int = 1

    register_method("extra", ExtraConfig, base_lr={"synth": 0.5}, recipe_options={"synth": {"width": 2}})(
        lambda model, cfg: [model.head])
    assert _run().hash() == before
    assert _run(method="extra").recipe.base_lr == 0.5
