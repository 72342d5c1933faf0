"""Where the generated report lives inside a results directory, and where the published numbers are."""
from __future__ import annotations

import re
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


DEFAULT_RESULTS = Path("results")


DEFAULT_REFERENCE = REPO_ROOT / "results" / "reference" / "published.csv"


DEFAULT_PERF = REPO_ROOT / "results" / "perf"  # the H200 step records (bench.perf) the cost columns read


README_NAME = "README.md"


TABLES_SUBDIR = "tables"


PLOTS_SUBDIR = "plots"


TRAINING_COST_TABLE = "h200_training_cost"  # the H200 step records the cost columns read (tables/*.csv)


DATASETS_PLOT = "datasets_by_method"


PAIRED_PLOT = "paired_differences"


CURVES_PLOT_PREFIX = "curves__"  # one figure per (dataset, backbone, recipe) group


TUNING_PLOT_PREFIX = "tuning__"  # the sensitivity figure of a group with tuning sweeps


def cost_plot(axis: str) -> str:
    """The figure of top-1 against one cost axis (bench.reporting.costs.COST_AXES), a panel per group."""
    return f"accuracy_vs_{axis}"


def safe_name(*parts: str) -> str:
    """A file-name stem from labels (which may hold brackets, commas and '=')."""
    return "__".join(re.sub(r"[^A-Za-z0-9_.-]", "-", p) for p in parts)


def curves_plot(group: tuple[str, str, str]) -> str:
    """The training-curves figure of a (dataset, backbone, recipe) group."""
    return CURVES_PLOT_PREFIX + safe_name(*group)


def tuning_plot(group: tuple[str, str, str]) -> str:
    """The sensitivity figure of a (dataset, backbone, recipe) group: held-out top-1 per grid point."""
    return TUNING_PLOT_PREFIX + safe_name(*group)
