"""The benchmark suite. Importing it first fixes the CPU numerics profile (bench.numerics), before
torch or numpy load, for this process and every job it starts."""
import sys

from bench.numerics import NumericsError, apply

try:
    NUMERICS = apply()
except NumericsError as _err:
    print(f"error: {_err}", file=sys.stderr)
    raise SystemExit(2) from None
