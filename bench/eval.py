"""``python -m bench.eval``: evaluate trained checkpoints with the recipe's test views, without training.

Each run builds the method on the pre-trained ``--weights``, loads the trainable weights of ``--init``
(the reference ST-Adapter code's ``save_model`` file or one of this suite's run checkpoints; it must
cover the method's trainable set exactly), evaluates it as ``bench.run`` evaluates a trained run
(per-video outputs included) and writes a record marked ``eval_only``. It runs locally or through
SLURM with the same options as ``bench.run``.
"""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

from bench.run import build_parser as run_parser
from bench.run import execute


def build_parser() -> argparse.ArgumentParser:
    parser = run_parser("python -m bench.eval", __doc__)
    parser.set_defaults(eval_only=True, seeds="1")
    for action in parser._actions:  # the checkpoint is what is evaluated
        if action.dest == "init":
            action.required = True
    parser.epilog = """examples:
  python -m bench.eval --methods st_adapter --weights ViT-B-16.pt --init checkpoint-11.pth \\
      --datasets k400 --root k400=/data/kinetics400
  python -m bench.eval --methods st_adapter --method-option st_adapter.preset=24x384 --weights ViT-B-16.pt \\
      --init ssv2-adapter24.pth --datasets ssv2 --root ssv2=/data/ssv2 --executor slurm --slurm-profile mycluster"""
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return execute(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
