"""``python -m bench.pretrain``: pre-train the embedded default's image ViT on synthetic stills (cached).

``bench.run`` does this automatically on first use; this command does it up front, or again with
``--force``.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys

from bench.engine.pretrain import DEFAULT, ensure_pretrained, pretrain_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.pretrain",
        description="Pre-train the synthetic suite's small image ViT on synthetic stills (cached; "
                    "bench.run does this automatically on first use).")
    parser.add_argument("--force", action="store_true", help="train again even if cached")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    folder = pretrain_dir(DEFAULT)
    if args.force and folder.exists():
        shutil.rmtree(folder)
    weights = ensure_pretrained(DEFAULT, progress=not args.quiet)
    summary = json.loads((weights.parent / "summary.json").read_text())
    print(f"{DEFAULT.reference}: {weights}\n  held-out top-1 on stills {summary['held_out_top1']:.1f}% "
          f"({summary['classes']} classes), trained in {summary['seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
