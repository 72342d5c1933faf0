"""The method registry: discovery, a method registered from a file outside the package (built and
trained like any other), collisions, declarations checked when a method registers."""
from __future__ import annotations

import os
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from torch import nn

import methods
from methods import (
    METHOD_FILES_ENV,
    MethodConfig,
    MethodRegistryError,
    build_model,
    get_method,
    list_methods,
    load_method_file,
    register_method,
    registry,
)
from tests.method_helpers import TINY, tiny_model, video

THROWAWAY = textwrap.dedent('''
    """A throwaway method: a zero-initialised ReLU bottleneck beside every block's MLP."""
    from dataclasses import dataclass

    import torch
    from torch import nn

    from methods import MethodConfig, register_method


    @dataclass(frozen=True)
    class SideMlpConfig(MethodConfig):
        width: int = 8

        def __post_init__(self) -> None:
            self.require_int("width", 1)


    class SideMlp(nn.Module):
        def __init__(self, dim: int, width: int) -> None:
            super().__init__()
            self.down, self.up = nn.Linear(dim, width), nn.Linear(width, dim)
            nn.init.zeros_(self.up.weight)
            nn.init.zeros_(self.up.bias)

        def forward(self, hidden, num_frames):
            return self.up(torch.relu(self.down(hidden)))


    @register_method("{name}", SideMlpConfig, presets={{"w4": {{"width": 4}}}},
                     base_lr={{"synth": 0.05}}, recipe_options={{"synth": {{"width": 4}}}})
    def attach(model, cfg):
        sides = []
        for i in range(model.encoder.depth):
            sides.append(SideMlp(model.encoder.width, cfg.width))
            model.encoder.add_parallel("mlp", i, sides[-1])
        return [*sides, model.head]
''')


@pytest.fixture
def isolated_registry(monkeypatch):
    """Registrations made by a test disappear with it."""
    monkeypatch.setattr(registry, "_METHODS", dict(registry._METHODS))


def write_method(folder: Path, name: str) -> Path:
    path = folder / f"{name}.py"
    path.write_text(THROWAWAY.format(name=name))
    return path


def test_package_methods_are_discovered_from_their_files():
    package = Path(methods.__file__).parent
    for name in list_methods():
        assert Path(get_method(name).source).parent == package, name


def test_a_method_from_a_file_outside_the_package_builds_and_trains(tmp_path, isolated_registry):
    module = load_method_file(write_method(tmp_path, "side_mlp"))
    assert load_method_file(tmp_path / "side_mlp.py") is module  # loading again is a no-op
    assert "side_mlp" in list_methods()
    spec = get_method("side_mlp")
    assert spec.source == str((tmp_path / "side_mlp.py").resolve())
    assert spec.base_lr_for("synth", 0.1) == 0.05 and spec.base_lr_for("k400", 1e-3) == 1e-3
    assert spec.options_for("synth") == {"width": 4} and spec.options_for("ssv2") == {}

    torch.manual_seed(0)
    probe = tiny_model("linear_probe").eval()
    model = build_model("side_mlp", TINY, 5, 4, random_init=True, method_options={"preset": "w4"})
    model.load_state_dict(probe.state_dict(), strict=False)
    with torch.no_grad():
        assert torch.equal(model.eval()(video()), probe(video()))  # zero-initialised: the image model
    assert {n.split(".")[1] for n, _ in model.trainable_named_parameters()} == {"mlp_branch", "fc"}

    model.train()
    optimizer = torch.optim.AdamW([p for _, p in model.trainable_named_parameters()], lr=1e-2)
    clip, labels = video(batch=4), torch.tensor([0, 1, 2, 3])
    losses = []
    for _ in range(5):
        loss = nn.functional.cross_entropy(model(clip), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    assert model.encoder.mlp_branch[0].side.up.weight.abs().sum() > 0


def test_method_files_from_the_environment(tmp_path, isolated_registry, monkeypatch):
    first, second = write_method(tmp_path, "env_one"), write_method(tmp_path, "env_two")
    monkeypatch.setenv(METHOD_FILES_ENV, f"{first}:{second}")
    monkeypatch.setattr(registry, "_discovered", False)
    assert {"env_one", "env_two"} <= set(list_methods())


def test_a_name_collision_is_rejected(tmp_path, isolated_registry):
    path = write_method(tmp_path, "st_adapter")
    with pytest.raises(MethodRegistryError, match=r"method 'st_adapter' from .*st_adapter\.py collides "
                                                   r"with the method of that name from .*methods/"
                                                   r"st_adapter\.py; rename one of them"):
        load_method_file(path)
    assert "methods/st_adapter.py" in get_method("st_adapter").source


def test_a_file_that_registers_nothing(tmp_path, isolated_registry):
    path = tmp_path / "empty.py"
    path.write_text("x = 1\n")
    with pytest.raises(MethodRegistryError, match=r"registered no method: decorate its attach function"):
        load_method_file(path)
    with pytest.raises(MethodRegistryError, match=r"not a \.py file"):
        load_method_file(tmp_path / "missing.py")


def test_a_failing_file_leaves_nothing_registered(tmp_path, isolated_registry):
    path = tmp_path / "broken.py"
    path.write_text(THROWAWAY.format(name="half_done") + "\nraise RuntimeError('boom')\n")
    with pytest.raises(RuntimeError, match="boom"):
        load_method_file(path)
    assert "half_done" not in list_methods()


def width_config() -> type[MethodConfig]:
    """A new config class per test: registering a class names it after its method."""
    @dataclass(frozen=True)
    class WidthConfig(MethodConfig):
        width: int = 8
    return WidthConfig


@pytest.mark.parametrize("kwargs,message", [
    ({"recipe_options": {"synth": {"widht": 4}}}, r"method 'typo', recipe options for 'synth': "
                                                   r"typo: unknown option\(s\) \['widht'\]"),
    ({"presets": {"p": {"preset": "p"}}}, r"method 'typo', preset 'p': typo: unknown option\(s\) "
                                                 r"\['preset'\]"),
    ({"base_lr": {"synth": 0}}, r"base_lr\['synth'\]=0 must be a positive number"),
    ({"tunable": {"widht": 2.0}}, r"tunable option 'widht' is not an option of WidthConfig \(\['width'\]\)"),
    ({"tunable": {"width": 1.0}}, r"tunable\['width'\]=1.0 must be the grid's ratio"),
])
def test_declarations_are_checked_at_registration(kwargs, message, isolated_registry):
    with pytest.raises(MethodRegistryError, match=message):
        register_method("typo", width_config(), **kwargs)(lambda model, cfg: [model.head])


def test_a_config_class_belongs_to_one_method(isolated_registry):
    config = width_config()
    register_method("owner", config)(lambda model, cfg: [model.head])
    with pytest.raises(MethodRegistryError, match=r"its config WidthConfig belongs to method 'owner'"):
        register_method("thief", config)(lambda model, cfg: [model.head])


def test_trainable_parts_outside_the_model_are_an_error(isolated_registry):
    register_method("stray", width_config())(
        lambda model, cfg: [model.head, nn.Linear(2, 2)])
    with pytest.raises(MethodRegistryError, match=r"method 'stray' declared 2 trainable parameter\(s\) "
                                                   r"that are not part of the model"):
        build_model("stray", TINY, 5, 4, random_init=True)


@pytest.mark.slow
def test_a_method_file_runs_through_bench_run(tmp_path, isolated_registry, monkeypatch, capsys):
    """``--method-file`` registers the method for the grid and for its jobs; the method's own
    synthetic-recipe options and learning rate are what the run records."""
    from bench.run import main
    from bench.store.records import load_records
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv(METHOD_FILES_ENV, raising=False)
    path = write_method(tmp_path, "side_mlp_run")
    results = tmp_path / "results"
    argv = ["--method-file", str(path), "--methods", "side_mlp_run", "--datasets", "synth_motion",
            "--backbone", "vit_tiny_test", "--weights", "random", "--seeds", "1", "--epochs", "1",
            "--batch-size", "64", "--executor", "debug", "--results", str(results)]
    assert main(argv) == 0
    (record,) = load_records(results)
    assert record.method == "side_mlp_run" and record.config["method_options"] == {"width": 4}
    assert record.config["recipe"]["base_lr"] == 0.05 and record.top1 >= 0
    assert str(path.resolve()) in os.environ[METHOD_FILES_ENV].split(os.pathsep)
    assert main([*argv[:1], str(tmp_path / "nowhere.py"), *argv[2:]]) == 2
    assert "--method-file" in capsys.readouterr().err
