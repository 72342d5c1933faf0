"""SLURM cluster profiles: what each of the suite's jobs asks a cluster for.

A profile is a small YAML file, ``slurm/profiles/<name>.yaml``, holding the site-specific part of a
submission (partition, account, time limit, GPUs, ...) so that the same run grid can go to any
cluster with ``bench.run --slurm-profile NAME``. It is validated as soon as it is loaded: a key or
value that sbatch would reject, or silently ignore, hours later in a queue is reported now, with the
file, line and key named.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

PROFILES_DIR = Path(__file__).resolve().parents[2] / "slurm" / "profiles"

# sbatch options the typed keys already set: giving them again in `extra_sbatch` would override the
# typed value behind the validation's back (or contradict it), so they are refused there.
_OPTIONS_SET_BY_KEYS = {
    "partition": "partition", "p": "partition", "account": "account", "A": "account",
    "qos": "qos", "q": "qos", "time": "time_min", "t": "time_min", "nodes": "nodes", "N": "nodes",
    "gpus-per-node": "gpus_per_node", "gpus": "gpus_per_node", "G": "gpus_per_node",
    "gres": "gpus_per_node", "ntasks-per-node": "tasks_per_node", "ntasks": "tasks_per_node",
    "n": "tasks_per_node", "cpus-per-task": "cpus_per_gpu", "cpus-per-gpu": "cpus_per_gpu",
    "c": "cpus_per_gpu", "mem": "mem_gb", "mem-per-gpu": "mem_gb", "mem-per-cpu": "mem_gb",
    "constraint": "constraint", "C": "constraint",
}


class ProfileError(ValueError):
    """A SLURM profile that cannot be found or does not follow the schema."""

    def __init__(self, path: Path | str, key: str | None, problem: str, line: int | None = None):
        self.path = Path(path)
        self.key = key
        self.line = line
        where = f"{path}:{line}" if line is not None else f"{path}"
        what = f" key '{key}':" if key is not None else ""
        super().__init__(f"{where}:{what} {problem}")


@dataclass(frozen=True)
class SlurmProfile:
    """Resources and placement of one job (one run) on a SLURM cluster.

    `None` leaves an option to the cluster's defaults. Each job gets `nodes` whole allocations of
    `gpus_per_node` GPUs; its processes are `tasks_per_node` per node (default: one per GPU, the
    layout DDP expects), and its CPUs are shared evenly between them.
    """

    name: str
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    time_min: int = 24 * 60
    nodes: int = 1
    gpus_per_node: int = 1
    tasks_per_node: int | None = None
    cpus_per_gpu: int = 8
    mem_gb: float | None = None          # per node, as sbatch --mem
    constraint: str | None = None        # node features, e.g. "a100|h100"
    setup: tuple[str, ...] = ()          # shell lines run before the job, e.g. "module load cuda"
    extra_sbatch: Mapping[str, str | int | float | bool] = field(default_factory=dict)
    device: str | None = None            # "cuda" or "cpu"; default: cuda when the job has GPUs

    @property
    def device_type(self) -> str:
        """Where the runs compute, known at planning time (a run's precision depends on it)."""
        return self.device or ("cuda" if self.gpus_per_node else "cpu")

    @property
    def tasks(self) -> int:
        """Processes per node."""
        return self.tasks_per_node if self.tasks_per_node is not None else self.gpus_per_node

    @property
    def cpus_per_task(self) -> int:
        return self.cpus_per_gpu * self.gpus_per_node // self.tasks

    def to_submitit_params(self) -> dict[str, Any]:
        """Keyword arguments for ``submitit.AutoExecutor.update_parameters``."""
        params: dict[str, Any] = {
            "timeout_min": self.time_min,
            "nodes": self.nodes,
            "gpus_per_node": self.gpus_per_node,
            "tasks_per_node": self.tasks,
            "cpus_per_task": self.cpus_per_task,
        }
        if self.mem_gb is not None:
            params["mem_gb"] = self.mem_gb
        for key in ("partition", "account", "qos", "constraint"):
            if getattr(self, key) is not None:
                params[f"slurm_{key}"] = getattr(self, key)
        if self.setup:
            params["slurm_setup"] = list(self.setup)
        if self.extra_sbatch:
            params["slurm_additional_parameters"] = dict(self.extra_sbatch)
        return params


# key -> (accepted value types, what to write in the error)
_FIELD_TYPES: dict[str, tuple[tuple[type, ...], str]] = {
    "partition": ((str,), "a string"),
    "account": ((str,), "a string"),
    "qos": ((str,), "a string"),
    "time_min": ((int,), "an integer (minutes)"),
    "nodes": ((int,), "an integer"),
    "gpus_per_node": ((int,), "an integer"),
    "tasks_per_node": ((int,), "an integer"),
    "cpus_per_gpu": ((int,), "an integer"),
    "mem_gb": ((int, float), "a number (GB per node)"),
    "constraint": ((str,), "a string"),
    "setup": ((list,), "a list of shell lines"),
    "extra_sbatch": ((dict,), "a mapping of sbatch option names to values"),
    "device": ((str,), 'a string, "cuda" or "cpu"'),
}
_COUNTS = {"time_min", "nodes", "gpus_per_node", "tasks_per_node", "cpus_per_gpu"}  # all >= 1


def resolve_profile_path(name_or_path: str | Path) -> Path:
    """A profile name means ``slurm/profiles/<name>.yaml``; anything path-like is taken as a path."""
    text = str(name_or_path)
    if isinstance(name_or_path, Path) or "/" in text or text.endswith((".yaml", ".yml")):
        path = Path(name_or_path)
        if not path.is_file():
            raise ProfileError(path, None, "no such profile file")
        return path
    path = PROFILES_DIR / f"{text}.yaml"
    if not path.is_file():
        known = ", ".join(available_profiles()) or "none"
        raise ProfileError(path, None, f"no profile named '{text}' (available: {known}); "
                           f"pass one of those, a path to a YAML file, or add {path}")
    return path


def available_profiles() -> list[str]:
    """Names of the profiles shipped in slurm/profiles/."""
    return sorted(p.stem for p in PROFILES_DIR.glob("*.yaml"))


def load_profile(name_or_path: str | Path) -> SlurmProfile:
    """Load and validate a profile by name (slurm/profiles/<name>.yaml) or by path."""
    path = resolve_profile_path(name_or_path)
    text = path.read_text()
    try:
        data = yaml.safe_load(text)
        lines = _key_lines(text)
    except yaml.YAMLError as error:
        raise ProfileError(path, None, f"not valid YAML: {error}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ProfileError(path, None, f"expected a mapping of keys to values, got {type(data).__name__}")
    return _profile_from_mapping(path, data, lines)


def _profile_from_mapping(path: Path, data: dict, lines: dict[str, int]) -> SlurmProfile:
    def fail(key: str, problem: str) -> ProfileError:
        return ProfileError(path, key, problem, lines.get(key))

    values: dict[str, Any] = {}
    for key, value in data.items():
        key = str(key)
        if key not in _FIELD_TYPES:
            close = difflib.get_close_matches(key, _FIELD_TYPES, n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            raise fail(key, f"unknown key; {hint}valid keys: {', '.join(_FIELD_TYPES)}")
        if value is None:
            continue  # an empty value means "cluster default", like leaving the key out
        types, expected = _FIELD_TYPES[key]
        if isinstance(value, bool) or not isinstance(value, types):
            raise fail(key, f"expected {expected}, got {value!r} ({type(value).__name__})")
        if key in _COUNTS and value < 1:
            raise fail(key, f"must be at least 1, got {value}")
        if key == "mem_gb" and value <= 0:
            raise fail(key, f"must be positive, got {value}")
        if key == "device" and value not in ("cuda", "cpu"):
            raise fail(key, f'must be "cuda" or "cpu", got {value!r}')
        values[key] = value

    if "setup" in values:
        bad = [line for line in values["setup"] if not isinstance(line, str)]
        if bad:
            raise fail("setup", f"every entry must be a string (a shell line), got {bad[0]!r}")
        values["setup"] = tuple(values["setup"])
    if "extra_sbatch" in values:
        _check_extra_sbatch(values["extra_sbatch"], fail)

    profile = SlurmProfile(name=path.stem, **values)
    if profile.cpus_per_task < 1:
        raise fail("tasks_per_node", f"{profile.tasks} tasks cannot share {profile.gpus_per_node} "
                   f"GPU(s) x {profile.cpus_per_gpu} CPU(s); lower tasks_per_node or raise cpus_per_gpu")
    return profile


def _check_extra_sbatch(extra: dict, fail) -> None:
    for option, value in extra.items():
        option = str(option)
        if option.startswith("-"):
            raise fail("extra_sbatch", f"write option '{option}' without leading dashes, "
                       f"e.g. '{option.lstrip('-')}'")
        if option in _OPTIONS_SET_BY_KEYS:
            raise fail("extra_sbatch", f"option '{option}' is set by the profile key "
                       f"'{_OPTIONS_SET_BY_KEYS[option]}'; use that key instead")
        if value is False or not isinstance(value, (str, int, float, bool)):
            raise fail("extra_sbatch", f"option '{option}': expected a string, a number, or true "
                       f"for a flag (leave a flag out to turn it off), got {value!r}")


def _key_lines(text: str) -> dict[str, int]:
    """1-based line of each top-level key, so errors can point at it."""
    node = yaml.compose(text, Loader=yaml.SafeLoader)
    if not isinstance(node, yaml.MappingNode):
        return {}
    return {str(key.value): key.start_mark.line + 1 for key, _ in node.value}

