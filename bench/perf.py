"""Training and evaluation speed and memory of every method at the paper's setting, on one GPU.

``python -m bench.perf`` builds each method on CLIP ViT-B/16's architecture with random weights (the
speed of a step does not depend on the weight values, as long as none is zero: zero-initialised
adapter parts are given random values so no kernel can shortcut them), feeds 32 clips of 8 frames
at 224 per step under bf16 autocast with fused AdamW over the method's trainable set, and records
the median of the timed steps (CUDA events), clips/s, peak memory and evaluation clips/s. Each
setting (a set of speed changes) is measured for every method in the same process, and every
method's ratio to full fine-tuning is taken against full_ft measured under the same setting.

    python -m bench.perf                       # settings plain, generic and fast, every method
    python -m bench.perf --settings fast --methods st_adapter_12x384,full_ft
    python -m bench.perf --profile st_adapter_12x384,full_ft --profile-dir /tmp/prof --micro
    python -m bench.perf --e2e                 # end to end on real-format video vs the step alone

Settings (``SETTINGS``): "plain" is the methods as built; "generic" adds the changes that apply to
every method alike (fused QuickGELU, attention and patch-embedding layouts); "fast" adds the adapter
fast path and frozen weights held in bf16 (full_ft has no frozen weights, so its "fast" is its
"generic"); the rest are ablations, recompute and torch.compile. One JSON record per (setting,
method) goes to ``results/perf/``.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any, Sequence

import torch

from bench.timing.cases import (
    BASELINE,
    DEFAULT_SETTINGS,
    PERF_DIR,
    SETTINGS,
    BenchSpec,
    Case,
    Measurement,
    PerfError,
    Setting,
    cases,
)
from bench.timing.e2e import FORMATS as E2E_FORMATS
from bench.timing.e2e import METHODS as E2E_METHODS
from bench.timing.e2e import E2ESpec
from bench.timing.e2e import run_all as run_e2e_all
from bench.timing.feature_cache import compare_feature_cache
from bench.timing.micro import micro_benchmarks
from bench.timing.profiling import format_profile, profile
from bench.timing.records import environment, format_table, load_measurements, record, write_json
from bench.timing.step import add_ratios, measure


def _pick(names: str, known: dict[str, Any], what: str) -> list[Any]:
    if names == "all":
        return list(known.values())
    chosen = []
    for name in (n.strip() for n in names.split(",") if n.strip()):
        if name not in known:
            raise PerfError(f"unknown {what} {name!r}; choose from {sorted(known)} or 'all'")
        chosen.append(known[name])
    return chosen


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.perf", description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", default="all", help="method labels, comma-separated "
                        f"({', '.join(c.label for c in cases())}) or 'all'")
    parser.add_argument("--settings", default=None, help="settings, comma-separated "
                        f"({', '.join(SETTINGS)}) or 'all' (default: {','.join(DEFAULT_SETTINGS)}; "
                        "with --from-records: all)")
    parser.add_argument("--steps", type=int, default=BenchSpec.timed_steps, help="timed steps (>= 20)")
    parser.add_argument("--warmup", type=int, default=BenchSpec.warmup_steps)
    parser.add_argument("--batch-size", type=int, default=BenchSpec.batch_size)
    parser.add_argument("--backbone", default=BenchSpec.backbone)
    parser.add_argument("--input-size", type=int, default=BenchSpec.input_size)
    parser.add_argument("--device", default=BenchSpec.device)
    parser.add_argument("--out", type=Path, default=PERF_DIR, help="where the JSON records go")
    parser.add_argument("--no-records", action="store_true", help="print the table only")
    parser.add_argument("--from-records", type=Path, default=None, metavar="DIR",
                        help="measure nothing: print the table of the perf records in DIR")
    parser.add_argument("--profile", default="", help="method labels to profile (per setting)")
    parser.add_argument("--profile-dir", type=Path, default=None, help="where profile tables go")
    parser.add_argument("--micro", action="store_true", help="also time each fast-path piece alone")
    parser.add_argument("--features", action="store_true",
                        help="also compare the cached-feature linear probe with the end-to-end one")
    parser.add_argument("--e2e", action="store_true", help="measure training end to end on Kinetics- and "
                        "SSv2-shaped video (bench.timing.e2e) instead of the step benchmark")
    parser.add_argument("--formats", default=",".join(E2E_FORMATS), help=f"--e2e formats ({', '.join(E2E_FORMATS)})")
    parser.add_argument("--e2e-methods", default=",".join(E2E_METHODS), help="--e2e methods")
    parser.add_argument("--workers", type=int, default=E2ESpec.workers, help="--e2e loader workers")
    parser.add_argument("--cpu-transforms", action="store_true",
                        help="--e2e with the transforms in the loader workers (the path before device transforms)")
    args = parser.parse_args(argv)
    if args.from_records is not None:
        return args
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("--device cuda: CUDA is not available here; use a GPU machine (or --device cpu "
                     "with --backbone vit_tiny_test for a smoke run)")
    if args.steps < 1 or args.warmup < 1:
        parser.error("--steps and --warmup must be >= 1")
    return args


def _print_table_from_records(folder: Path, settings: list[Setting] | None) -> int:
    results = load_measurements(folder)
    if settings is not None:
        results = [m for m in results if m.setting in {s.name for s in settings}]
    if not results:
        print(f"error: no perf records in {folder}", file=sys.stderr)
        return 2
    print(format_table(results))
    return 0


def _measure_all(cases: list[Case], settings: list[Setting], profiled: list[Case], spec: BenchSpec,
                 env: dict[str, Any], out: Path | None, profile_dir: Path | None) -> list[Measurement]:
    """Every (setting, method), full_ft first in each setting; records are written as measured, so a
    later failure loses nothing."""
    cases = sorted(cases, key=lambda c: c.label != BASELINE)
    results: list[Measurement] = []
    for setting in settings:
        for case in cases:
            m = measure(case, setting, spec)
            results.append(m)
            add_ratios(results)
            if out is not None:
                write_json(out / f"{spec.backbone}__{m.setting}__{m.label}.json",
                           record(m, setting, spec, env))
            print(f"{setting.name:>14} {case.label:<22} {m.step_ms:7.1f} ms  {m.peak_gib:6.2f} GiB  "
                  f"eval {m.eval_clips_per_s:6.0f} clips/s  (first step {m.first_step_s:.1f} s)", flush=True)
        for case in profiled:
            result = profile(case, setting, spec)
            text = format_profile(result)
            print(text, flush=True)
            if profile_dir is not None:
                profile_dir.mkdir(parents=True, exist_ok=True)
                stem = f"profile__{setting.name}__{case.label}"
                (profile_dir / f"{stem}.md").write_text(text + "\n```\n" + result["table"] + "\n```\n")
                write_json(profile_dir / f"{stem}.json", {k: v for k, v in result.items() if k != "table"})
    return results


def _e2e(args: argparse.Namespace) -> int:
    from bench.cache import cache_root
    formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    methods = [m.strip() for m in args.e2e_methods.split(",") if m.strip()]
    unknown = sorted(set(formats) - set(E2E_FORMATS)) + sorted(set(methods) - set(E2E_METHODS))
    if unknown:
        print(f"error: unknown --e2e format(s)/method(s) {unknown}", file=sys.stderr)
        return 2
    spec = E2ESpec(workers=args.workers, batch_size=args.batch_size, backbone=args.backbone,
                   device_transforms=not args.cpu_transforms)
    out = None if args.no_records else args.out
    run_e2e_all(formats, methods, spec, cache_root() / "e2e", out, "_cpu_transforms" if args.cpu_transforms else "")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.e2e:
        return _e2e(args)
    try:
        settings = None if args.settings is None else _pick(args.settings, SETTINGS, "setting")
        if args.from_records is not None:
            return _print_table_from_records(args.from_records, settings)
        settings = settings or [SETTINGS[name] for name in DEFAULT_SETTINGS]
        known = {c.label: c for c in cases()}
        chosen = _pick(args.methods, known, "method label")
        profiled = _pick(args.profile, known, "method label") if args.profile else []
    except PerfError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    spec = BenchSpec(backbone=args.backbone, input_size=args.input_size, batch_size=args.batch_size,
                     warmup_steps=args.warmup, timed_steps=args.steps, device=args.device)
    env = environment(spec)
    out = None if args.no_records else args.out
    print(f"# {env['hardware'].get('gpu', args.device)}, torch {env['torch']}, triton {env['triton']}; "
          f"{spec.backbone}, {spec.batch_size} clips x {spec.num_frames} frames at {spec.input_size}, "
          f"{spec.autocast} autocast, {spec.timed_steps} timed steps", flush=True)
    results = _measure_all(chosen, settings, profiled, spec, env, out, args.profile_dir)
    provenance_fields = {"spec": dataclasses.asdict(spec), "gpu": env["hardware"].get("gpu", "none"),
                         "environment": env}
    if args.micro:
        rows = micro_benchmarks(spec)
        for row in rows:
            print(f"micro {row['piece']:<52} reference {row['reference']:7.3f} ms  "
                  f"fast {row['fast']:7.3f} ms")
        if out is not None:
            write_json(out / f"{spec.backbone}__micro.json",
                       {"kind": "perf_micro", "rows": rows, **provenance_fields})
    if args.features:
        comparison = compare_feature_cache(spec)
        print(f"linear probe, {comparison['epochs']} epochs: end to end {comparison['end_to_end_s']:.1f} s, "
              f"cached features {comparison['cached_s']:.1f} s ({comparison['speedup']:.1f}x)", flush=True)
        if out is not None:
            write_json(out / f"{spec.backbone}__linear_probe_feature_cache.json",
                       {**comparison, **provenance_fields})
    print(format_table(results), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
