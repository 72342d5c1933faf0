"""Where each dataset lives: a CLI flag, an environment variable or a small user config file.

Resolution order: explicit ``root`` (``--root``) > ``BENCH_<NAME>_ROOT`` > the config file
(``$BENCH_CONFIG`` or ``~/.config/petl-bench/datasets.yaml``, a mapping like ``k400: /data/k400``).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import yaml

CONFIG_ENV = "BENCH_CONFIG"
DEFAULT_CONFIG = Path("~/.config/petl-bench/datasets.yaml")
VIDEO_EXTENSIONS = (".mp4", ".webm", ".mkv", ".avi", ".mov", ".m4v")


class DatasetRootError(ValueError):
    """A dataset root that is unset, missing, or not laid out as the reader expects."""

    def __init__(self, dataset: str, path: Path | str | None, problem: str, expected: str, source: str = ""):
        self.dataset, self.path, self.expected = dataset, path, expected
        tried = f"'{path}'" + (f" (from {source})" if source else "") if path is not None else "no path"
        super().__init__(
            f"{dataset}: {problem}\n  path tried: {tried}\n  layout expected:\n{_indent(expected)}\n"
            f"  fix: pass --root, set {env_var(dataset)}, or add '{dataset}: /path/to/{dataset}' to "
            f"{config_path()}")


def _indent(text: str) -> str:
    return "\n".join("    " + line for line in text.strip().splitlines())


def env_var(dataset: str) -> str:
    return f"BENCH_{dataset.upper()}_ROOT"


def config_path() -> Path:
    return Path(os.environ.get(CONFIG_ENV, DEFAULT_CONFIG)).expanduser()


@dataclass(frozen=True)
class DatasetRoot:
    path: Path
    source: str  # where the path came from, quoted in errors


def resolve_root(dataset: str, root: str | Path | None, expected: str) -> DatasetRoot:
    """The root directory of ``dataset`` (existence is checked here; the layout by the reader)."""
    if root is not None:
        found = DatasetRoot(Path(root).expanduser(), "the root argument")
    elif os.environ.get(env_var(dataset)):
        found = DatasetRoot(Path(os.environ[env_var(dataset)]).expanduser(), env_var(dataset))
    else:
        found = _from_config(dataset, expected)
    if not found.path.is_dir():
        raise DatasetRootError(dataset, found.path, "the root is not a directory", expected, found.source)
    return found


def _from_config(dataset: str, expected: str) -> DatasetRoot:
    path = config_path()
    if not path.is_file():
        raise DatasetRootError(dataset, None, "no root given and none configured", expected)
    try:
        config = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise DatasetRootError(dataset, None, f"config file {path} is not valid YAML: {err}", expected) from err
    if not isinstance(config, dict) or not isinstance(config.get(dataset, ""), str):
        raise DatasetRootError(dataset, None, f"config file {path} must map dataset names to paths "
                               f"(e.g. '{dataset}: /data/{dataset}')", expected)
    if dataset not in config:
        raise DatasetRootError(dataset, None, f"no root given and no '{dataset}' entry in {path}", expected)
    return DatasetRoot(Path(config[dataset]).expanduser(), f"config file {path}")


def index_videos_by_stem(directory: Path) -> dict[str, Path]:
    """Every video file under ``directory`` (any depth) by file stem.

    Looking clips up by stem makes nested and flat layouts, and prepared copies whose extension
    changed (e.g. ``.webm`` re-encoded to ``.mp4``), read the same way. On a clash the earlier
    extension in VIDEO_EXTENSIONS wins, so the result does not depend on directory order.
    """
    found: dict[str, Path] = {}
    rank = {ext: i for i, ext in enumerate(VIDEO_EXTENSIONS)}
    for folder, _, files in os.walk(directory):
        for name in files:
            stem, ext = os.path.splitext(name)
            if ext.lower() not in rank:
                continue
            previous = found.get(stem)
            if previous is None or rank[ext.lower()] < rank[previous.suffix.lower()] or (
                    rank[ext.lower()] == rank[previous.suffix.lower()] and os.path.join(folder, name) < str(previous)):
                found[stem] = Path(folder, name)
    return found
