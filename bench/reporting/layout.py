"""Where the generated report lives inside a results directory, and where the published numbers are."""
from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


DEFAULT_RESULTS = Path("results")


DEFAULT_REFERENCE = REPO_ROOT / "results" / "reference" / "published.csv"


README_NAME = "README.md"


TABLES_SUBDIR = "tables"


PLOTS_SUBDIR = "plots"


ACCURACY_PLOT = "accuracy_vs_params"


DATASETS_PLOT = "datasets_by_method"


