"""The method registry: a method is one file that registers itself with ``@register_method``.

Methods are found without a hand-kept list: ``discover()`` (run on the first lookup) imports every
module of this package, then every file named in ``$BENCH_METHOD_FILES`` (paths separated by
``os.pathsep``); ``load_method_file(path)`` registers a method from any file at any time. A name can
be registered once: a collision is an error naming both sources.
"""
from __future__ import annotations

import dataclasses
import hashlib
import importlib
import importlib.util
import os
import pkgutil
import sys
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Mapping, TypeVar

from .base import MethodConfig, MethodConfigError, MethodRegistryError, MethodSpec, UnknownMethodError

METHOD_FILES_ENV = "BENCH_METHOD_FILES"

_METHODS: dict[str, MethodSpec] = {}
_discovered = False

Attach = TypeVar("Attach", bound=Callable[..., Any])


def register_method(name: str, config: type[MethodConfig], *,
                    presets: Mapping[str, Mapping[str, Any]] | None = None,
                    base_lr: Mapping[str, float] | None = None,
                    recipe_options: Mapping[str, Mapping[str, Any]] | None = None,
                    tunable: Mapping[str, float] | None = None,
                    merge: Callable[[Any], Any] | None = None,
                    version: int = 1) -> Callable[[Attach], Attach]:
    """Decorate a method's ``attach(model, config)`` to register the method under ``name``.

    ``presets`` are named option sets; ``base_lr`` and ``recipe_options`` are the method's recipe
    rules per recipe family (``MethodSpec``); ``tunable`` the numeric options a tuning protocol may
    search, with their grid ratio; ``merge`` the function that folds a trained model into its
    deployed form (``MethodSpec.merge``). ``version`` enters every run's identity: bump it when a
    change makes the method compute something else, so old records stop matching new runs. Every
    preset and recipe option set is validated here, so a typo fails when the method is imported.
    """
    def decorate(attach: Attach) -> Attach:
        spec = MethodSpec(name=name, config_cls=config, attach=attach, presets=dict(presets or {}),
                          base_lr=dict(base_lr or {}), recipe_options=dict(recipe_options or {}),
                          tunable=dict(tunable or {}), merge=merge, source=_source(attach), version=version)
        _check(spec)
        add_method(spec)
        return attach
    return decorate


def _source(attach: Callable[..., Any]) -> str:
    module = sys.modules.get(attach.__module__)
    return getattr(module, "__file__", None) or attach.__module__


def _check(spec: MethodSpec) -> None:
    if not spec.name.isidentifier():
        raise MethodRegistryError(f"method name {spec.name!r} (from {spec.source}) must be an "
                                  "identifier, e.g. 'st_adapter'")
    if not (isinstance(spec.config_cls, type) and issubclass(spec.config_cls, MethodConfig)):
        raise MethodRegistryError(f"method {spec.name!r}: config must be a MethodConfig dataclass, "
                                  f"got {spec.config_cls!r}")
    declared = spec.config_cls.__dict__.get("method", spec.name)
    if declared != spec.name:
        raise MethodRegistryError(f"method {spec.name!r}: its config {spec.config_cls.__name__} "
                                  f"belongs to method {declared!r}; give each method its own class")
    for family, lr in spec.base_lr.items():
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0:
            raise MethodRegistryError(f"method {spec.name!r}: base_lr[{family!r}]={lr!r} must be a "
                                      "positive number (base lr per 256 clips)")
    if spec.merge is not None and not callable(spec.merge):
        raise MethodRegistryError(f"method {spec.name!r}: merge={spec.merge!r} must be a function that folds a "
                                  "trained model into its deployed form")
    options = sorted(f.name for f in dataclasses.fields(spec.config_cls))
    for option, ratio in spec.tunable.items():
        if option not in options:
            raise MethodRegistryError(f"method {spec.name!r}: tunable option {option!r} is not an option of "
                                      f"{spec.config_cls.__name__} ({options})")
        if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not ratio > 1:
            raise MethodRegistryError(f"method {spec.name!r}: tunable[{option!r}]={ratio!r} must be the grid's "
                                      "ratio between neighbouring values, a number > 1 (e.g. 2.0)")
    owned = "method" in spec.config_cls.__dict__
    spec.config_cls.method = spec.name  # error messages name the method
    checks = [*((f"preset {name!r}", _config, values) for name, values in spec.presets.items()),
              *((f"recipe options for {family!r}", config_from, values)
                for family, values in spec.recipe_options.items())]
    try:
        for what, make, values in checks:
            make(spec, values)
    except MethodConfigError as err:
        if not owned:
            del spec.config_cls.method
        raise MethodRegistryError(f"method {spec.name!r}, {what}: {err}") from err


def add_method(spec: MethodSpec) -> None:
    """Register ``spec``; a name that is taken is an error (methods are never replaced silently)."""
    known = _METHODS.get(spec.name)
    if known is not None:
        raise MethodRegistryError(f"method {spec.name!r} from {spec.source} collides with the "
                                  f"method of that name from {known.source}; rename one of them")
    _METHODS[spec.name] = spec


def discover() -> None:
    """Import every module of this package and the files in ``$BENCH_METHOD_FILES`` (once)."""
    global _discovered
    if _discovered:
        return
    _discovered = True
    package = __name__.rpartition(".")[0]
    for info in pkgutil.iter_modules([str(Path(__file__).parent)]):
        if not info.ispkg:
            importlib.import_module(f"{package}.{info.name}")
    for path in os.environ.get(METHOD_FILES_ENV, "").split(os.pathsep):
        if path.strip():
            load_method_file(path.strip())


def load_method_file(path: str | Path) -> ModuleType:
    """Import the Python file at ``path`` so that its ``@register_method`` runs; loading the same
    file again returns the module already loaded. The file must register at least one method."""
    file = Path(path).expanduser().resolve()
    if not file.is_file() or file.suffix != ".py":
        raise MethodRegistryError(f"method file {str(file)!r}: not a .py file; pass the path of a "
                                  "Python file that decorates an attach function with "
                                  "@methods.register_method")
    module_name = f"_bench_method_{hashlib.sha256(str(file).encode()).hexdigest()[:12]}_{file.stem}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    before = set(_METHODS)
    spec = importlib.util.spec_from_file_location(module_name, file)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
        if set(_METHODS) == before:
            raise MethodRegistryError(f"method file {str(file)!r} registered no method: decorate its "
                                      "attach function with @methods.register_method(name, Config)")
    except BaseException:
        del sys.modules[module_name]
        for name in set(_METHODS) - before:
            del _METHODS[name]
        raise
    return module


def list_methods() -> list[str]:
    discover()
    return sorted(_METHODS)


def get_method(method: str) -> MethodSpec:
    discover()
    try:
        return _METHODS[method]
    except KeyError:
        raise UnknownMethodError(f"unknown method {method!r}; choose one of {list_methods()} (a "
                                 f"method in another file: methods.load_method_file(path) or "
                                 f"${METHOD_FILES_ENV})") from None


def config_from(spec: MethodSpec, options: Mapping[str, Any]) -> MethodConfig:
    """``spec``'s typed config from a preset (``preset=...``) and/or explicit options."""
    options = dict(options)
    preset = options.pop("preset", None)
    if preset is None:
        return _config(spec, options)
    if preset not in spec.presets:
        raise MethodConfigError(f"{spec.name}: unknown preset {preset!r}; presets: "
                                f"{sorted(spec.presets) or 'none'}")
    return _config(spec, {**spec.presets[preset], **options})


def _config(spec: MethodSpec, values: Mapping[str, Any]) -> MethodConfig:
    fields = spec.config_cls.__dataclass_fields__
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise MethodConfigError(f"{spec.name}: unknown option(s) {unknown}; options: "
                                f"{sorted(fields) or 'none'}, plus 'preset' {sorted(spec.presets)}")
    return spec.config_cls(**values)


def make_method_config(method: str, **options: Any) -> MethodConfig:
    """The method's typed config from a preset (``preset=...``) and/or explicit options."""
    return config_from(get_method(method), options)
