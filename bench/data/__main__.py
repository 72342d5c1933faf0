"""Command line: ``python -m bench.data {scan,prepare,bench,bench-prepare,profile} ...`` (``--help`` on each)."""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from .dataset import DATASETS
from .listfile import AnnotationError
from .prepare import EncodeSettings
from .profile import READERS
from .roots import DatasetRootError


def _splits(text: str) -> tuple[str, ...]:
    splits = tuple(s.strip() for s in text.split(",") if s.strip())
    bad = [s for s in splits if s not in ("train", "val")]
    if bad or not splits:
        raise argparse.ArgumentTypeError(f"splits must be a comma list of train,val; got {text!r}")
    return splits


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.data", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    workers = dict(type=int, default=os.cpu_count() or 1, help="parallel processes (default: all cores)")

    scan = commands.add_parser("scan", help="decode every listed video once; write a cleaned list and a report")
    scan.add_argument("--dataset", required=True, choices=DATASETS)
    scan.add_argument("--splits", type=_splits, default=("train", "val"), help="comma list (default train,val)")
    scan.add_argument("--root", help="dataset root (default: BENCH_<DATASET>_ROOT or the user config file)")
    scan.add_argument("--out", type=Path, required=True, help="folder for the cleaned lists and reports")
    scan.add_argument("--workers", **workers)

    prepare = commands.add_parser("prepare", help="re-encode to a smaller short side with short keyframe intervals")
    prepare.add_argument("--dataset", required=True, choices=("k400", "ssv2", "list"))
    prepare.add_argument("--splits", type=_splits, default=("train", "val"))
    prepare.add_argument("--root", help="dataset root (default: BENCH_<DATASET>_ROOT or the user config file)")
    prepare.add_argument("--out", type=Path, required=True, help="root of the prepared copy")
    prepare.add_argument("--short-side", type=int, default=EncodeSettings.short_side)
    prepare.add_argument("--keyframe-interval", type=int, default=EncodeSettings.keyframe_interval,
                         help="frames between keyframes (default 1: all-intra, fastest sampled reads)")
    prepare.add_argument("--crf", type=int, default=EncodeSettings.crf)
    prepare.add_argument("--workers", **workers)

    bench = commands.add_parser("bench", help="clips/s of the suite's loader vs decoding every frame")
    bench.add_argument("--workers", type=int, default=min(os.cpu_count() or 1, 8), help="DataLoader workers")
    bench.add_argument("--videos", type=int, default=4, help="distinct Kinetics-like clips written")
    bench.add_argument("--clips", type=int, default=96, help="clips loaded per measurement")
    bench.add_argument("--rounds", type=int, default=3, help="alternating measurement rounds (median kept)")
    bench.add_argument("--batch-size", type=int, default=4)
    bench.add_argument("--tag", help="record name (default: host name)")
    bench.add_argument("--out", type=Path, help="record path (default results/perf/data_loader_<tag>.json)")
    speed = commands.add_parser("bench-prepare", help="videos/s of prepare on Kinetics-shaped clips, and the CPU "
                                "a prepared copy saves per read (whether preparing pays)")
    speed.add_argument("--videos", type=int, default=32, help="distinct Kinetics-shaped clips prepared")
    speed.add_argument("--workers", **workers)
    speed.add_argument("--repeats", type=int, default=3, help="timed read passes over each copy (min and median kept)")
    speed.add_argument("--cache", type=Path, help="where the fixture goes (default: $BENCH_CACHE/prepare-speed)")
    speed.add_argument("--tag", help="record name (default: host name)")
    speed.add_argument("--out", type=Path, help="record path (default results/perf/prepare_<tag>.json)")
    profile = commands.add_parser("profile", help="one loader worker's CPU ms per clip, stage by stage, "
                                  "on Kinetics- and SSv2-shaped files")
    profile.add_argument("--clips", type=int, default=16, help="distinct clips per fixture")
    profile.add_argument("--repeats", type=int, default=3, help="timed passes (min and median kept)")
    profile.add_argument("--readers", help=f"comma list (default: every importable one of {', '.join(READERS)})")
    profile.add_argument("--cache", type=Path, help="where the fixtures go (default: $BENCH_CACHE/profile)")
    profile.add_argument("--scaling", help="comma list of process counts for the side-by-side decode test")
    profile.add_argument("--tag", help="record name (default: host name)")
    profile.add_argument("--out", type=Path, help="record path (default results/perf/data_profile_<tag>.json)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "scan":
            from .scan import scan
            for split in args.splits:
                report = scan(args.dataset, split, args.root, args.out, args.workers)
                print(f"{args.dataset} {split}: {report['readable']} of {report['listed']} readable, "
                      f"{report['broken']} broken or missing -> {report['cleaned_list']}")
        elif args.command == "prepare":
            from .prepare import prepare
            settings = EncodeSettings(args.short_side, args.keyframe_interval, args.crf)
            summary = prepare(args.dataset, args.root, args.out, args.splits, settings, args.workers)
            speed = "" if summary["videos_per_s"] is None else (
                f"; {summary['encoded_now']} encoded in {summary['elapsed_s']:.0f} s, "
                f"{summary['videos_per_s']:.2f} videos/s with {args.workers} workers")
            print(f"prepared {summary['videos'] - len(summary['failed'])} of {summary['videos']} videos "
                  f"into {summary['out']} ({len(summary['failed'])} failed, {summary['missing']} missing){speed}")
        elif args.command == "bench-prepare":
            from .prepare_speed import run_prepare_benchmark
            from bench.cache import cache_root
            record = run_prepare_benchmark(args.videos, args.workers, args.cache or cache_root() / "prepare-speed",
                                           args.repeats, args.tag, args.out)
            print(json.dumps({k: record[k] for k in ("videos_per_s", "cpu_s_per_video", "read_cpu_ms_saved_per_clip",
                                                     "break_even_reads", "path")}, indent=1))
        elif args.command == "profile":
            from .profile import run_profile
            from bench.cache import cache_root
            readers = tuple(r.strip() for r in args.readers.split(",")) if args.readers else None
            scaling = [int(n) for n in args.scaling.split(",")] if args.scaling else None
            record = run_profile(args.cache or cache_root() / "profile", args.clips, args.repeats,
                                 readers=readers, tag=args.tag, out=args.out, scaling=scaling)
            print(json.dumps(record["results"], indent=1))
        else:
            from .benchmark import run_benchmark
            record = run_benchmark(args.workers, args.videos, args.clips, args.batch_size, args.tag, args.out,
                                   rounds=args.rounds)
            print(json.dumps(record, indent=2))
    except (DatasetRootError, AnnotationError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
