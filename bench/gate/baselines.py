"""Baselines: what each configuration of the default suite gave on the machine that made them, and how
far a fresh run elsewhere may fall from it.

``results/baselines.json`` holds, per configuration, every committed seed's exact numbers with the
environment fingerprint it ran under, the probes of its code (bench.gate.probes), and a calibrated
spread ``sigma``: the per-seed standard deviation pooled over the committed seeds and the seeds of a
measured environment change (the same code under another torch, ``--drift DIR``), shrunk towards the
pooled value of its dataset so that three nearly equal seeds cannot make the gate fire on noise.

An environment change moves more than a new seed does: it also re-draws what every seed shares, the
pre-trained synthetic backbone (pre-training runs on the same torch), so the runs of one environment
are shifted together. That shift is ``environment_sigma``, estimated from the measured drift (the
part of the configurations' mean differences that their seed spread does not explain), and a fresh
mean under another fingerprint may fall ``K_SIGMAS`` x sqrt(sigma^2 (1/n_fresh + 1/n_baseline) +
environment_sigma^2) below its baseline.
"""
from __future__ import annotations

import functools
import json
import math
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from bench.atomic import atomic_write
from bench.config import RunConfig
from bench.gate.probes import ModelProbes, data_key, data_probe, model_probes
from bench.reporting.summary import method_label
from bench.store.records import RunRecord

BASELINES_NAME = "baselines.json"
SCHEMA = 2
K_SIGMAS = 4.0  # one-sided: a fresh mean this many standard errors below the baseline is a regression
PRIOR_WEIGHT = 4  # the dataset's pooled spread counts as this many degrees of freedom in each sigma
SIGMA_FLOOR = 0.5  # top-1 points: below it, differences are rounding on a 640-video validation set
GFLOPS_RELATIVE_TOLERANCE = 0.005
TOLERANCE_RULE = (
    "same fingerprint: every number of every seed exactly equal; different fingerprint: the fresh top-1 "
    f"mean may fall at most {K_SIGMAS:g} x sqrt(sigma^2 (1/n_fresh + 1/n_baseline) + environment_sigma^2) "
    "below the baseline mean (sigma: seed spread pooled with a measured environment change, shrunk "
    f"towards the dataset's pooled spread with weight {PRIOR_WEIGHT}, at least {SIGMA_FLOOR:g}; "
    "environment_sigma: the measured drift's shared part); any mode: parameter counts, "
    f"views and probes exact, GFLOPs within {100 * GFLOPS_RELATIVE_TOLERANCE:g}%, order-aware methods "
    "above order-blind ones on synth_motion")

Key = tuple[str, str, str, str]  # (method label, dataset, backbone, recipe)


class BaselineError(ValueError):
    """A baselines file that does not follow its schema."""

    def __init__(self, path: Path | str, where: str, problem: str):
        super().__init__(f"{path}: {where}: {problem}")


def record_key(record: RunRecord) -> Key:
    return (method_label(record, record.file_name), record.dataset, record.backbone, record.recipe)


def describe_key(key: Key) -> str:
    method, dataset, backbone, recipe = key
    return f"{method} on {dataset} ({backbone}, recipe {recipe})"


@dataclass(frozen=True)
class SeedResult:
    """One committed seed, to the last bit."""

    seed: int
    config_hash: str
    fingerprint: str
    top1: float
    top5: float
    per_class_top1: list
    loss_curve: list  # the training loss at every logged point
    eval_curve: list  # top-1 at every evaluation during training
    predictions_sha256: str | None  # the per-video outputs, byte for byte

    @classmethod
    def of(cls, record: RunRecord) -> "SeedResult":
        curves = record.curves or {"train": {"loss": []}, "eval": {"top1": []}}
        return cls(record.seed, record.config_hash, record.fingerprint.get("digest", "none"), record.top1,
                   record.top5, list(record.per_class_top1), list(curves["train"]["loss"]),
                   list(curves["eval"]["top1"]), (record.predictions or {}).get("sha256"))

    def moved(self, fresh: "SeedResult") -> list[str]:
        """The numbers of ``fresh`` (the same seed, run again) that differ from these, by name."""
        return [f"{name} {getattr(self, name)!r} -> {getattr(fresh, name)!r}" if name in ("top1", "top5")
                else name for name in EXACT_FIELDS if getattr(self, name) != getattr(fresh, name)]


EXACT_FIELDS = ("top1", "top5", "per_class_top1", "loss_curve", "eval_curve", "predictions_sha256")


@dataclass(frozen=True)
class Baseline:
    method: str
    dataset: str
    backbone: str
    recipe: str
    n: int
    top1_mean: float
    top1_std: float | None
    sigma: float
    params_trainable: int
    gflops_per_view: float
    views: int
    num_classes: int
    train_clips: int
    config: dict
    probes: ModelProbes
    seeds: tuple[SeedResult, ...]

    @property
    def key(self) -> Key:
        return (self.method, self.dataset, self.backbone, self.recipe)

    @property
    def run_config(self) -> RunConfig:
        return RunConfig.from_dict(self.config)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["probes"] = self.probes.to_dict()
        return data


@dataclass
class BaselineSet:
    baselines: list[Baseline]
    data_probes: dict[str, dict[str, list[float]]]
    calibration: dict[str, Any] = field(default_factory=dict)
    # bench.gate.numerics_probe where the baselines were derived: {"fingerprint": digest, "digests": ...}
    numerics: dict[str, Any] = field(default_factory=dict)

    def by_key(self) -> dict[Key, Baseline]:
        return {b.key: b for b in self.baselines}


# -- Deriving -----------------------------------------------------------------------------------------

def group(records: Iterable[RunRecord]) -> dict[Key, list[RunRecord]]:
    groups: dict[Key, list[RunRecord]] = {}
    for r in sorted(records, key=lambda r: (record_key(r), r.seed)):
        groups.setdefault(record_key(r), []).append(r)
    return groups


def _pooled_variance(samples: Sequence[Sequence[float]]) -> tuple[float, int]:
    """Variance pooled over groups (each about its own mean) and its degrees of freedom."""
    ss = sum(sum((x - statistics.fmean(s)) ** 2 for x in s) for s in samples if len(s) > 1)
    df = sum(len(s) - 1 for s in samples if len(s) > 1)
    return (ss / df if df else 0.0), df


@dataclass(frozen=True)
class Drift:
    """A measured environment change: records of the same code under another environment, and the
    reference they moved from (records of that code where the baselines' environment ran it; None:
    the baselines themselves). A pair of the same older code measures a machine's drift as well as
    a pair of today's code does: what moves is the pre-trained backbone and every run with it."""

    drifted: dict[Key, list[RunRecord]]
    reference: dict[Key, list[RunRecord]] | None = None


def calibrate(baseline_groups: dict[Key, list[RunRecord]],
              environments: dict[str, Drift]) -> tuple[dict[Key, float], dict[str, Any]]:
    """sigma per configuration, and the calibration facts: drift per environment and configuration with
    its z-score, each environment's largest |z| when the calibration leaves it out, and the false-alarm
    probability of one gate run that those held-out z-scores imply."""
    base = _top1(baseline_groups)
    pairs = {env: (_top1(d.reference) if d.reference is not None else base, _top1(d.drifted))
             for env, d in environments.items()}
    sigmas, env_sigma, task_variance = _spread(base, pairs)
    drift = [_drift_row(env, key, ref[key], values, sigmas.get(key, _task_sigma(task_variance, key)), env_sigma)
             for env, (ref, drifted) in sorted(pairs.items()) for key, values in sorted(drifted.items()) if key in ref]
    held_out = {}
    for env in sorted(pairs) if len(pairs) > 1 else []:
        others = {e: p for e, p in pairs.items() if e != env}
        s_out, tau_out, var_out = _spread(base, others)
        ref, drifted = pairs[env]
        held_out[env] = [_drift_row(env, key, ref[key], values, s_out.get(key, _task_sigma(var_out, key)), tau_out)["z"]
                         for key, values in sorted(drifted.items()) if key in ref]
    facts = {"k_sigmas": K_SIGMAS, "prior_weight": PRIOR_WEIGHT, "sigma_floor": SIGMA_FLOOR,
             "environment_sigma": round(env_sigma, 4),
             "dataset_sigma": {d: round(math.sqrt(v), 4) for d, v in task_variance.items()},
             "drift": drift, "max_abs_drift_z": max((abs(d["z"]) for d in drift), default=None)}
    if held_out:
        zs = [z for values in held_out.values() for z in values]
        spread = math.sqrt(statistics.fmean(z * z for z in zs))
        facts["held_out_max_abs_z"] = {env: round(max(map(abs, values)), 3) for env, values in held_out.items()}
        facts["held_out_z_rms"] = round(spread, 3)
        facts["false_alarm_per_run"] = false_alarm_probability(spread, len(base))
    return sigmas, facts


def false_alarm_probability(z_spread: float, configurations: int) -> float:
    """P(some configuration falls K sigmas below its baseline) in one gate run of an unchanged suite,
    when the held-out drift z-scores of a new environment spread as N(0, z_spread^2)."""
    one = 0.5 * math.erfc(K_SIGMAS / max(z_spread, 1e-9) / math.sqrt(2))
    return round(1 - (1 - one) ** configurations, 6)


def _top1(groups: dict[Key, list[RunRecord]]) -> dict[Key, list[float]]:
    return {k: [r.top1 for r in runs] for k, runs in groups.items()}


def _task_sigma(task_variance: dict[str, float], key: Key) -> float:
    return max(math.sqrt(task_variance.get(key[1], 0.0)), SIGMA_FLOOR)


def _spread(base: dict[Key, list[float]], pairs: dict[str, tuple[dict, dict]]
            ) -> tuple[dict[Key, float], float, dict[str, float]]:
    """(sigma per baseline configuration, environment_sigma, pooled seed variance per dataset).

    Seeds are pooled over every group of runs of a configuration (the baselines, each drift and each
    reference), each group about its own mean; sigma shrinks towards its dataset's pooled variance.
    environment_sigma by the method of moments: E[delta^2] = sigma^2 (1/n_a + 1/n_b) + env_sigma^2."""
    groups: dict[Key, list[list[float]]] = {k: [v] for k, v in base.items()}
    for ref, drifted in pairs.values():
        for source in ([ref] if ref is not base else []) + [drifted]:
            for k, v in source.items():
                groups.setdefault(k, []).append(v)
    task_variance = {d: _pooled_variance([s for k, v in groups.items() if k[1] == d for s in v])[0]
                     for d in sorted({k[1] for k in groups})}
    sigmas = {}
    for key, samples in groups.items():
        own, df = _pooled_variance(samples)
        sigmas[key] = max(math.sqrt((df * own + PRIOR_WEIGHT * task_variance[key[1]]) / (df + PRIOR_WEIGHT)),
                          SIGMA_FLOOR)
    excess = [(statistics.fmean(d[k]) - statistics.fmean(ref[k])) ** 2 - sigmas[k] ** 2 * (1 / len(ref[k]) + 1 / len(d[k]))
              for ref, d in pairs.values() for k in d if k in ref]
    env_sigma = math.sqrt(max(0.0, statistics.fmean(excess))) if excess else 0.0
    return sigmas, env_sigma, task_variance


def _drift_row(env: str, key: Key, reference: list[float], values: list[float], sigma: float,
               env_sigma: float) -> dict[str, Any]:
    delta = statistics.fmean(values) - statistics.fmean(reference)
    return {"environment": env, "config": describe_key(key), "n": len(values), "reference_n": len(reference),
            "baseline_mean": round(statistics.fmean(reference), 4), "drift_mean": round(statistics.fmean(values), 4),
            "delta": round(delta, 4), "sigma": round(sigma, 4),
            "z": round(delta / standard_error(sigma, len(reference), len(values), env_sigma), 3)}


def standard_error(sigma: float, n_fresh: int, n_baseline: int, environment_sigma: float) -> float:
    """Of a fresh mean's difference from its baseline mean under another environment."""
    return math.sqrt(sigma ** 2 * (1 / n_fresh + 1 / n_baseline) + environment_sigma ** 2)


def derive(records: Sequence[RunRecord],
           drift: dict[str, tuple[Sequence[RunRecord], Sequence[RunRecord] | None]] | None = None) -> BaselineSet:
    """Baselines from trusted records, sigma calibrated on ``drift`` (per environment, named by its
    folder: its records, and the reference records they moved from or None for the baselines), probes
    computed from the current code."""
    drift = drift or {}
    groups = group(records)
    sigmas, facts = calibrate(groups, {env: Drift(group(runs), None if ref is None else group(ref))
                                       for env, (runs, ref) in drift.items()})
    if drift:
        facts["drift_sources"] = sorted(drift)
        facts["drift_references"] = {env: "baselines" if ref is None else sorted(
            {r.fingerprint.get("digest", "none") for r in ref}) for env, (_, ref) in sorted(drift.items())}
        facts["drift_environments"] = {
            env: {"fingerprints": sorted({r.fingerprint.get("digest", "none") for r in runs}),
                  "packages": sorted({json.dumps(r.fingerprint.get("packages", {}), sort_keys=True) for r in runs}),
                  "cpu": sorted({json.dumps(r.fingerprint.get("machine", r.fingerprint.get("cpu", {})), sort_keys=True)
                          for r in runs})}
            for env, (runs, _) in sorted(drift.items())}
    baselines, data_probes = [], {}
    for key, runs in groups.items():
        first = runs[0]
        cfg = RunConfig.from_dict(first.config)
        num_classes, train_clips = len(first.per_class_top1), int(first.extra["train_clips"])
        top1 = [r.top1 for r in runs]
        baselines.append(Baseline(
            method=key[0], dataset=key[1], backbone=key[2], recipe=key[3], n=len(runs),
            top1_mean=round(statistics.fmean(top1), 4),
            top1_std=round(statistics.stdev(top1), 4) if len(top1) > 1 else None,
            sigma=round(sigmas[key], 4), params_trainable=first.params_trainable,
            gflops_per_view=first.gflops_per_view, views=first.views, num_classes=num_classes,
            train_clips=train_clips, config=first.config,
            probes=model_probes(cfg, num_classes, train_clips), seeds=tuple(SeedResult.of(r) for r in runs)))
        data_probes.setdefault(data_key(cfg), data_probe(cfg))
    return BaselineSet(sorted(baselines, key=lambda b: b.key), data_probes, facts, numerics_facts())


@functools.lru_cache(maxsize=1)
def numerics_facts() -> dict[str, Any]:
    """This machine's few-step training bytes of every method (bench.gate.numerics_probe) and the
    fingerprint they were made under: under one lock and numerics profile, every CPU must give them.
    Once per process: they describe the machine and the installed code, which a process does not change."""
    from bench.gate.numerics_probe import probe
    from bench.store.provenance import fingerprint
    digests = probe()["digests"]  # at the probe's one thread, which the fingerprint then records
    return {"fingerprint": fingerprint()["digest"], "digests": digests}


# -- Reading and writing ------------------------------------------------------------------------------

def baselines_json(bset: BaselineSet) -> str:
    data = {"schema": SCHEMA, "rule": TOLERANCE_RULE, "calibration": bset.calibration,
            "data_probes": bset.data_probes, "numerics": bset.numerics,
            "baselines": [b.to_dict() for b in bset.baselines]}
    return json.dumps(data, indent=1, sort_keys=True) + "\n"


def write_baselines(path: Path | str, bset: BaselineSet) -> Path:
    return atomic_write(path, baselines_json(bset))


_BASELINE_FIELDS = {"method", "dataset", "backbone", "recipe", "n", "top1_mean", "top1_std", "sigma",
                    "params_trainable", "gflops_per_view", "views", "num_classes", "train_clips", "config",
                    "probes", "seeds"}


def load_baselines(path: Path | str) -> BaselineSet:
    path = Path(path)
    if not path.is_file():
        raise BaselineError(path, "file", "not found; derive it from trusted records with "
                            "`python -m bench.check --write-baselines` or pass --baselines FILE")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise BaselineError(path, "<json>", f"not valid JSON (line {e.lineno}: {e.msg})") from e
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        found = data.get("schema", "none") if isinstance(data, dict) else type(data).__name__
        raise BaselineError(path, "schema", f"is {found}, this code reads {SCHEMA}; regenerate with "
                            "`python -m bench.check --write-baselines`")
    baselines = []
    for i, entry in enumerate(data.get("baselines", [])):
        where = f"baselines[{i}]"
        if not isinstance(entry, dict) or set(entry) != _BASELINE_FIELDS:
            missing = sorted(_BASELINE_FIELDS - set(entry)) if isinstance(entry, dict) else "all"
            raise BaselineError(path, where, f"expected the fields {sorted(_BASELINE_FIELDS)}; missing {missing}")
        try:
            baselines.append(Baseline(**{**entry, "probes": ModelProbes.from_dict(entry["probes"]),
                                         "seeds": tuple(SeedResult(**s) for s in entry["seeds"])}))
        except (TypeError, KeyError) as e:
            raise BaselineError(path, where, f"malformed ({e})") from e
    return BaselineSet(baselines, data.get("data_probes", {}), data.get("calibration", {}), data.get("numerics", {}))
