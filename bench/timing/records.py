"""Perf records under results/perf/: environment, writing, reading back, the table."""
from __future__ import annotations

import dataclasses
import datetime as _dt
import json
from pathlib import Path
from typing import Any

import torch

from bench.atomic import atomic_write
from bench.store import provenance
from bench.timing.cases import SETTINGS, BenchSpec, Measurement, Setting, cases


def environment(spec: BenchSpec) -> dict[str, Any]:
    device = torch.device(spec.device)
    info: dict[str, Any] = {"torch": torch.__version__, "cuda": torch.version.cuda,
                            "hardware": provenance.hardware(device)}
    try:
        import triton
        info["triton"] = triton.__version__
    except ImportError:
        info["triton"] = None
    commit, dirty = provenance.git_state()
    info.update(git_commit=commit, git_dirty=dirty)
    return info


def write_json(path: Path, data: dict[str, Any]) -> Path:
    return atomic_write(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def record(m: Measurement, setting: Setting, spec: BenchSpec, env: dict[str, Any]) -> dict[str, Any]:
    return {"kind": "perf", **dataclasses.asdict(m), "peak_memory_gib": round(m.peak_gib, 3),
            "setting_detail": setting.to_dict(), "spec": dataclasses.asdict(spec),
            "gpu": env["hardware"].get("gpu", "none"), "environment": env,
            "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}


def _ratio(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def format_table(results: list[Measurement]) -> str:
    header = ("| setting | method | trainable | step ms (p10-p90) | clips/s | peak GiB | eval clips/s "
              "| step / full_ft | memory / full_ft |")
    lines = [header, "|" + "---|" * 9]
    for m in results:
        lines.append(f"| {m.setting} | {m.label} | {m.params_trainable:,} | {m.step_ms:.1f} "
                     f"({m.step_ms_p10:.1f}-{m.step_ms_p90:.1f}) | {m.clips_per_s:.0f} | {m.peak_gib:.2f} "
                     f"| {m.eval_clips_per_s:.0f} | {_ratio(m.step_ratio_to_full_ft)} "
                     f"| {_ratio(m.memory_ratio_to_full_ft)} |")
    return "\n".join(lines) + "\n"


def load_measurements(folder: Path) -> list[Measurement]:
    """The perf records under ``folder``, in setting then method order (for tables)."""
    names = {f.name for f in dataclasses.fields(Measurement)}
    found = []
    for path in sorted(Path(folder).glob("*.json")):
        data = json.loads(path.read_text())
        if data.get("kind") == "perf":
            found.append(Measurement(**{k: v for k, v in data.items() if k in names}))
    settings, labels = list(SETTINGS), [c.label for c in cases()]
    return sorted(found, key=lambda m: (settings.index(m.setting) if m.setting in settings else len(settings),
                                        labels.index(m.label) if m.label in labels else len(labels)))
