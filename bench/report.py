"""Tables and plots of the matched comparison, generated from the run records and nothing else.

``python -m bench.report`` reads every record under ``results/runs/``, summarises the seeds of each
(dataset, backbone, recipe, method) and writes ``results/README.md`` (Markdown), ``results/tables/``
(LaTeX and CSV) and ``results/plots/`` (PNG and PDF). Published numbers from
``results/reference/published.csv`` stand beside the reproduced ones, always labelled "reported".

The same records give byte-identical tables (fixed sort orders and number formats, no timestamps, no
absolute paths), which is what lets ``bench.check`` fail on a hand-edited table. Plots carry no
metadata and have a fixed size and DPI.
"""
from __future__ import annotations

import argparse
import csv
import io
import math
import os
import re
import statistics
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

from tabulate import tabulate

from bench.records import RecordError, RunRecord, load_records, runs_dir

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_RESULTS = Path("results")
DEFAULT_REFERENCE = REPO_ROOT / "results" / "reference" / "published.csv"
README_NAME = "README.md"
TABLES_SUBDIR = "tables"
PLOTS_SUBDIR = "plots"
ACCURACY_PLOT = "accuracy_vs_params"
DATASETS_PLOT = "datasets_by_method"

# Plot geometry: fixed so that the same records give the same pixels (and tests know the size).
DPI = 150
PANEL_SIZE_IN = (4.5, 3.6)
LEGEND_WIDTH_IN = 2.6
MAX_PANEL_COLUMNS = 3
_MARKERS = ("o", "s", "D", "^", "v", "P", "X", "*", "<", ">", "h", "p")
_NO_METADATA = {
    "png": {"Software": None},
    "pdf": {"Creator": None, "Producer": None, "CreationDate": None},
}
_DASH = "—"
FILE_MODE = 0o644  # tempfile.mkstemp creates 0600; generated files are meant to be read by anyone


class ReportError(ValueError):
    """Input that the report cannot summarise honestly: inconsistent runs, a bad reference file."""


def _seed_std(values: list[float]) -> float | None:
    """Sample standard deviation over seeds; undefined (None) for a single seed."""
    return statistics.stdev(values) if len(values) > 1 else None


@dataclass(frozen=True)
class MethodSummary:
    """All seeds of one (dataset, backbone, recipe, method) configuration."""

    dataset: str
    backbone: str
    recipe: str
    method: str  # method label: the method id plus its options, see method_label()
    seeds: tuple[int, ...]
    top1: tuple[float, ...]
    top5: tuple[float, ...]
    params_trainable: int
    params_total: int
    params_backbone: int | None
    gflops_per_view: float
    views: int
    throughput_clips_per_s: float | None  # mean over the seeds that measured it
    peak_memory_bytes: int | None  # largest over the seeds that measured it

    @property
    def group(self) -> tuple[str, str, str]:
        return (self.dataset, self.backbone, self.recipe)

    @property
    def n(self) -> int:
        return len(self.seeds)

    @property
    def top1_mean(self) -> float:
        return statistics.fmean(self.top1)

    @property
    def top1_std(self) -> float | None:
        return _seed_std(self.top1)

    @property
    def top5_mean(self) -> float:
        return statistics.fmean(self.top5)

    @property
    def top5_std(self) -> float | None:
        return _seed_std(self.top5)

    @property
    def params_percent(self) -> float | None:
        return 100.0 * self.params_trainable / self.params_backbone if self.params_backbone else None


@dataclass(frozen=True)
class ReportedRow:
    """One published number (results/reference/published.csv); never mixed with reproduced rows."""

    method: str
    dataset: str
    backbone: str
    frames: int | None
    top1: float
    top5: float | None
    params_trainable_m: float | None
    gflops_per_view: float | None
    views: int | None
    source: str
    reference: str
    setting: str


# ----------------------------------------------------------------------------------------------
# Reading


def method_label(record: RunRecord, where: Path | str) -> str:
    """The method id, plus its options when it has any, so that two presets get two rows."""
    options = record.config.get("method_options") or {}
    if not isinstance(options, dict):
        raise RecordError(where, "config.method_options", f"expected an object, got {options!r}")
    if not options:
        return record.method
    return f"{record.method}[{','.join(f'{k}={options[k]}' for k in sorted(options))}]"


def backbone_sizes(records: Iterable[RunRecord]) -> dict[str, int]:
    """Parameter count of each frozen image backbone, read off the runs on it.

    A run's frozen count (total - trainable) is at most the backbone's size and equals it for every
    method that freezes the whole backbone (linear probe, adapters, prompts), so the largest frozen
    count among a backbone's runs is its size whenever any such method ran on it.
    """
    sizes: dict[str, int] = {}
    for r in records:
        sizes[r.backbone] = max(sizes.get(r.backbone, 0), r.params_total - r.params_trainable)
    return sizes


def summarize(records: Sequence[RunRecord], results_dir: Path | str = ".") -> list[MethodSummary]:
    """One summary per configuration, sorted by (dataset, backbone, recipe, trainable params, method).

    Seeds of one configuration must agree on everything that does not depend on the seed
    (parameter counts, FLOPs, views) and a seed may appear once: anything else means records of
    different experiments were mixed, and averaging them would be wrong. `results_dir` only
    names the files in error messages.
    """
    sizes = backbone_sizes(records)
    by_key: dict[tuple[str, str, str, str], list[RunRecord]] = {}
    for r in records:
        key = (r.dataset, r.backbone, r.recipe, method_label(r, runs_dir(results_dir) / r.file_name))
        by_key.setdefault(key, []).append(r)

    summaries = []
    for (dataset, backbone, recipe, method), runs in by_key.items():
        runs = sorted(runs, key=lambda r: (r.seed, r.file_name))
        _check_consistent(runs, runs_dir(results_dir))
        throughputs = [r.throughput_clips_per_s for r in runs if r.throughput_clips_per_s > 0]
        memories = [r.peak_memory_bytes for r in runs if r.peak_memory_bytes > 0]
        first = runs[0]
        summaries.append(MethodSummary(
            dataset=dataset, backbone=backbone, recipe=recipe, method=method,
            seeds=tuple(r.seed for r in runs),
            top1=tuple(float(r.top1) for r in runs), top5=tuple(float(r.top5) for r in runs),
            params_trainable=first.params_trainable, params_total=first.params_total,
            params_backbone=sizes[backbone] or None,
            gflops_per_view=float(first.gflops_per_view), views=first.views,
            throughput_clips_per_s=statistics.fmean(throughputs) if throughputs else None,
            peak_memory_bytes=max(memories) if memories else None,
        ))
    return sorted(summaries, key=lambda s: (*s.group, s.params_trainable, s.method))


def _check_consistent(runs: list[RunRecord], folder: Path) -> None:
    """`runs` sorted by seed; raise if a seed repeats or the seeds disagree on a seed-free field."""
    def where(record: RunRecord) -> Path:
        return folder / record.file_name

    first = runs[0]
    for previous, r in zip(runs, runs[1:]):
        if r.seed == previous.seed:
            raise ReportError(
                f"{where(previous)} and {where(r)} are both seed {r.seed} of the same configuration "
                f"({r.dataset}, {r.backbone}, {r.recipe}, {r.method}); remove the stale one or keep "
                "different experiments in different --results directories")
        for name in ("params_trainable", "params_total", "gflops_per_view", "views"):
            if getattr(r, name) != getattr(first, name):
                raise ReportError(
                    f"{where(r)}: field '{name}' is {getattr(r, name)!r} but {where(first)} of the "
                    f"same configuration has {getattr(first, name)!r}; seeds of one configuration "
                    "must agree on it (re-run the stale one with --force)")


_REFERENCE_COLUMNS = ("method", "dataset", "backbone", "frames", "top1", "top5", "params_trainable_m",
                      "gflops_per_view", "views", "source", "reference", "setting")


def load_reference(path: Path | str) -> list[ReportedRow]:
    """Published numbers, validated; rows keep the file's (curated) order."""
    path = Path(path)
    if not path.is_file():
        raise ReportError(f"{path}: reference file not found; pass --reference FILE "
                          f"(the repository's is {DEFAULT_REFERENCE})")
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        if tuple(reader.fieldnames or ()) != _REFERENCE_COLUMNS:
            raise ReportError(f"{path}: header must be {','.join(_REFERENCE_COLUMNS)}, "
                              f"got {','.join(reader.fieldnames or ())}")
        rows = []
        for row in reader:
            where = f"{path}:{reader.line_num}"
            rows.append(ReportedRow(
                method=_required(row, "method", where), dataset=_required(row, "dataset", where),
                backbone=_required(row, "backbone", where),
                frames=_number(row, "frames", int, where),
                top1=_number(row, "top1", float, where, required=True),
                top5=_number(row, "top5", float, where),
                params_trainable_m=_number(row, "params_trainable_m", float, where),
                gflops_per_view=_number(row, "gflops_per_view", float, where),
                views=_number(row, "views", int, where),
                source=_required(row, "source", where), reference=_required(row, "reference", where),
                setting=row["setting"].strip(),
            ))
    return rows


def _required(row: dict[str, str], column: str, where: str) -> str:
    value = (row[column] or "").strip()
    if not value:
        raise ReportError(f"{where}: column '{column}' is empty; it is required")
    return value


def _number(row: dict[str, str], column: str, kind: Callable, where: str, required: bool = False):
    text = (row[column] or "").strip()
    if not text:
        if required:
            raise ReportError(f"{where}: column '{column}' is empty; it is required")
        return None
    try:
        return kind(text)
    except ValueError:
        raise ReportError(f"{where}: column '{column}' is {text!r}, expected {kind.__name__}") from None


# ----------------------------------------------------------------------------------------------
# Formatting (fixed, so that output is byte-stable)


def _sig(value: float, digits: int = 3) -> str:
    """At least `digits` significant digits and one decimal, never exponent notation."""
    if value == 0:
        return "0"
    decimals = max(1, digits - 1 - math.floor(math.log10(abs(value))))
    return f"{value:.{decimals}f}"


def _mean_std(mean: float, std: float | None) -> str:
    return f"{mean:.2f}" if std is None else f"{mean:.2f} ± {std:.2f}"


def _opt(value: float | int | None, fmt: Callable[[float], str]) -> str:
    return _DASH if value is None else fmt(value)


def _gflops_views(gflops: float | None, views: int | None) -> str:
    if gflops is None:
        return _DASH
    return f"{_sig(gflops)} × {views}" if views else _sig(gflops)


def _csv_value(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def _safe_name(*parts: str) -> str:
    return "__".join(re.sub(r"[^A-Za-z0-9_.-]", "-", p) for p in parts)


# ----------------------------------------------------------------------------------------------
# Tables

_MEASURED_HEADERS = ("method", "trainable params (M)", "% of backbone", "GFLOPs × views",
                     "top-1 (%)", "top-5 (%)", "n seeds", "throughput (clips/s)", "peak memory (GiB)")
_MEASURED_ALIGN = ("left",) + ("right",) * 8
_REPORTED_HEADERS = ("method", "backbone", "frames", "trainable params (M)", "GFLOPs × views",
                     "top-1 (%)", "top-5 (%)", "source", "setting")
_REPORTED_ALIGN = ("left", "left", "right", "right", "right", "right", "right", "left", "left")
_CSV_COLUMNS = ("dataset", "backbone", "recipe", "method", "n", "seeds", "top1_mean", "top1_std",
                "top5_mean", "top5_std", "params_trainable", "params_total", "params_backbone",
                "params_percent_of_backbone", "gflops_per_view", "views", "throughput_clips_per_s",
                "peak_memory_gib")


def _measured_cells(s: MethodSummary) -> tuple[str, ...]:
    return (
        s.method, _sig(s.params_trainable / 1e6), _opt(s.params_percent, lambda p: f"{_sig(p)}%"),
        _gflops_views(s.gflops_per_view, s.views), _mean_std(s.top1_mean, s.top1_std),
        _mean_std(s.top5_mean, s.top5_std), str(s.n),
        _opt(s.throughput_clips_per_s, lambda t: f"{t:.1f}"),
        _opt(s.peak_memory_bytes, lambda b: f"{b / 2**30:.2f}"),
    )


def _reported_cells(r: ReportedRow) -> tuple[str, ...]:
    source = "released code" if r.source == "code" else r.source
    return (
        f"{r.method} (reported)", r.backbone, _opt(r.frames, str), _opt(r.params_trainable_m, _sig),
        _gflops_views(r.gflops_per_view, r.views), f"{r.top1:.1f}", _opt(r.top5, lambda v: f"{v:.1f}"),
        f"{source}, {r.reference}", r.setting,
    )


def _table(rows: Sequence[Sequence[str]], headers: Sequence[str], align: Sequence[str], fmt: str) -> str:
    text = tabulate(rows, headers=headers, tablefmt=fmt, colalign=align, disable_numparse=True)
    if fmt == "latex_booktabs":
        text = text.replace("±", r"$\pm$").replace("×", r"$\times$").replace(_DASH, "--")
    return text + "\n"


def _csv_text(rows: Iterable[Sequence[object]], columns: Sequence[str]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows([_csv_value(v) for v in row] for row in rows)
    return out.getvalue()


def _csv_row(s: MethodSummary) -> tuple[object, ...]:
    return (
        s.dataset, s.backbone, s.recipe, s.method, s.n, " ".join(map(str, s.seeds)), s.top1_mean,
        s.top1_std, s.top5_mean, s.top5_std, s.params_trainable, s.params_total, s.params_backbone,
        s.params_percent, s.gflops_per_view, s.views, s.throughput_clips_per_s,
        None if s.peak_memory_bytes is None else s.peak_memory_bytes / 2**30,
    )


def _reported_csv_row(r: ReportedRow) -> tuple[object, ...]:
    return (r.method, r.dataset, r.backbone, r.frames, r.top1, r.top5, r.params_trainable_m,
            r.gflops_per_view, r.views, r.source, r.reference, r.setting)


def _groups(summaries: Sequence[MethodSummary]) -> dict[tuple[str, str, str], list[MethodSummary]]:
    groups: dict[tuple[str, str, str], list[MethodSummary]] = {}
    for s in summaries:
        groups.setdefault(s.group, []).append(s)
    return groups


_GENERATED = ("Generated by `python -m bench.report` from the run records in `runs/`. Do not edit: "
              "`python -m bench.check` fails when this file differs from what the records generate.")

_DEFINITIONS = """\
## How to read the tables

- **trainable params (M)**: parameters the optimizer updates, in millions.
- **% of backbone**: trainable parameters as a percentage of the frozen image backbone's parameter
  count. That count is the largest frozen count (total - trainable) among the runs on the backbone,
  which is exactly the backbone's size whenever a method that freezes the whole backbone (linear
  probe, adapters, prompts, temporal attention) ran on it. Full fine-tuning exceeds 100% because it
  also trains the head.
- **GFLOPs × views**: forward compute of one test view (fvcore; one multiply-add = one FLOP) times
  the number of test views.
- **top-1 / top-5 (%)**: video-level accuracy, mean ± sample standard deviation (n - 1) over the
  n seeds; a single seed has no spread.
- **throughput, peak memory**: training clips per second (mean over seeds) and peak memory (largest
  over seeds: CUDA max allocated on GPU, process max RSS on CPU), as the runs recorded them; "—"
  when no run measured them.
- **reported** rows are published numbers (`reference/published.csv`, with their source and
  setting), not reproduced by this suite and not trained under its matched recipe.
"""


def render_tables(summaries: Sequence[MethodSummary], reported: Sequence[ReportedRow]) -> dict[str, str]:
    """Every generated text file, keyed by its path relative to the results directory."""
    files: dict[str, str] = {}
    md = [f"<!-- {_GENERATED} -->", "", "# Results", ""]
    groups = _groups(summaries)
    if groups:
        n_runs = sum(s.n for s in summaries)
        md += [f"{n_runs} runs: {len(summaries)} configurations over {len(groups)} "
               "(dataset, backbone, recipe) groups.", "",
               f"![Top-1 against trainable parameters]({PLOTS_SUBDIR}/{ACCURACY_PLOT}.png)", "",
               f"![Top-1 per method, datasets side by side]({PLOTS_SUBDIR}/{DATASETS_PLOT}.png)", ""]
    else:
        md += ["No run records yet: run `python -m bench.run`, then `python -m bench.report`.", ""]

    for (dataset, backbone, recipe), rows in groups.items():
        stem = f"{TABLES_SUBDIR}/{_safe_name(dataset, backbone, recipe)}"
        beside = [r for r in reported if r.dataset == dataset]
        measured = [_measured_cells(s) for s in rows]
        md += [f"## {dataset} · {backbone} · recipe {recipe}", "",
               _table(measured, _MEASURED_HEADERS, _MEASURED_ALIGN, "pipe")]
        tex = [f"% {_GENERATED}", _table(measured, _MEASURED_HEADERS, _MEASURED_ALIGN, "latex_booktabs")]
        if beside:
            cells = [_reported_cells(r) for r in beside]
            md += [f"Reported for {dataset} (published, not reproduced here):", "",
                   _table(cells, _REPORTED_HEADERS, _REPORTED_ALIGN, "pipe")]
            tex += ["% Reported (published, not reproduced here)",
                    _table(cells, _REPORTED_HEADERS, _REPORTED_ALIGN, "latex_booktabs")]
        else:
            md += [f"No published numbers exist for {dataset}; see the reported section below.", ""]
        files[f"{stem}.tex"] = "\n".join(tex)
        files[f"{stem}.csv"] = _csv_text((_csv_row(s) for s in rows), _CSV_COLUMNS)

    if reported:
        cells = [_reported_cells(r) for r in reported]
        headers = ("dataset",) + _REPORTED_HEADERS
        align = ("left",) + _REPORTED_ALIGN
        with_dataset = [(r.dataset, *c) for r, c in zip(reported, cells)]
        md += ["## Reported numbers (published; not reproduced by this suite)", "",
               _table(with_dataset, headers, align, "pipe")]
        files[f"{TABLES_SUBDIR}/reported.tex"] = "\n".join(
            [f"% {_GENERATED}", _table(with_dataset, headers, align, "latex_booktabs")])
        files[f"{TABLES_SUBDIR}/reported.csv"] = _csv_text(
            (_reported_csv_row(r) for r in reported), _REFERENCE_COLUMNS)

    md.append(_DEFINITIONS)
    files[README_NAME] = "\n".join(md)
    return files


# ----------------------------------------------------------------------------------------------
# Plots


def figure_size_in(n_panels: int) -> tuple[float, float]:
    """Figure size in inches for `n_panels` panels (at most MAX_PANEL_COLUMNS per row) plus the legend."""
    cols = min(max(n_panels, 1), MAX_PANEL_COLUMNS)
    rows = math.ceil(max(n_panels, 1) / MAX_PANEL_COLUMNS)
    return (cols * PANEL_SIZE_IN[0] + LEGEND_WIDTH_IN, rows * PANEL_SIZE_IN[1])


def figure_size_px(n_panels: int) -> tuple[int, int]:
    w, h = figure_size_in(n_panels)
    return (round(w * DPI), round(h * DPI))


def _method_styles(methods: Iterable[str]) -> dict[str, tuple[tuple[float, float, float], str]]:
    """A fixed colour and marker per method, shared by every figure."""
    import seaborn as sns

    names = sorted(set(methods))
    palette = sns.color_palette("colorblind" if len(names) <= 10 else "husl", len(names))
    return {m: (palette[i], _MARKERS[i % len(_MARKERS)]) for i, m in enumerate(names)}


def _panels(n: int):
    import matplotlib.pyplot as plt

    cols = min(n, MAX_PANEL_COLUMNS)
    rows = math.ceil(n / MAX_PANEL_COLUMNS)
    fig = plt.figure(figsize=figure_size_in(n), dpi=DPI, layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes[:n]


def _legend(fig, axes) -> None:
    """One legend for the figure, outside the panels, each label once, in sorted order."""
    entries: dict[str, object] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            entries.setdefault(label, handle)
    labels = sorted(entries)
    fig.legend([entries[k] for k in labels], labels, loc="outside right upper", fontsize="small",
               frameon=False)


def _save(fig, stem: Path) -> list[Path]:
    import matplotlib.pyplot as plt

    paths = []
    for ext in ("png", "pdf"):
        path = stem.with_suffix(f".{ext}")
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=f".{ext}")
        os.close(fd)
        try:
            fig.savefig(tmp, format=ext, dpi=DPI, metadata=_NO_METADATA[ext])
            os.chmod(tmp, FILE_MODE)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        paths.append(path)
    plt.close(fig)
    return paths


def plot_accuracy_vs_params(summaries: Sequence[MethodSummary], reported: Sequence[ReportedRow],
                            stem: Path) -> list[Path]:
    """Top-1 against trainable parameters (log x), one panel per group; seed std as error bars,
    hollow markers for reported points (only those with a published parameter count)."""
    from matplotlib import ticker

    groups = _groups(summaries)
    styles = _method_styles([s.method for s in summaries] + [r.method for r in reported])
    fig, axes = _panels(len(groups))
    for ax, ((dataset, backbone, recipe), rows) in zip(axes, groups.items()):
        for s in rows:
            color, marker = styles[s.method]
            ax.errorbar(s.params_trainable / 1e6, s.top1_mean, yerr=s.top1_std or 0.0, fmt=marker,
                        color=color, markersize=7, capsize=3, label=s.method)
        for r in reported:
            if r.dataset == dataset and r.params_trainable_m is not None:
                color, marker = styles[r.method]
                ax.scatter(r.params_trainable_m, r.top1, marker=marker, s=60, facecolors="none",
                           edgecolors=color, linewidths=1.5, label=f"{r.method} (reported)")
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(ticker.NullFormatter())
        ax.set_title(f"{dataset} · {backbone} · {recipe}", fontsize="medium")
        ax.set_xlabel("trainable parameters (M, log scale)")
        ax.set_ylabel("top-1 (%)")
    _legend(fig, axes)
    return _save(fig, stem)


def plot_datasets_by_method(summaries: Sequence[MethodSummary], stem: Path) -> list[Path]:
    """Top-1 per method with the datasets side by side (e.g. appearance vs motion), one panel per
    backbone; bars are seed means, error bars the seed standard deviation (n - 1)."""
    import pandas as pd
    import seaborn as sns

    per_seed = pd.DataFrame(
        [{"backbone": s.backbone, "method": s.method, "series": _series(s, summaries), "top1": t,
          "params": s.params_trainable} for s in summaries for t in s.top1])
    backbones = sorted(per_seed["backbone"].unique())
    series = sorted(per_seed["series"].unique())
    palette = dict(zip(series, sns.color_palette("Set2", len(series))))
    fig, axes = _panels(len(backbones))
    for ax, backbone in zip(axes, backbones):
        data = per_seed[per_seed["backbone"] == backbone]
        order = sorted(data["method"].unique(),
                       key=lambda m: (data.loc[data["method"] == m, "params"].min(), m))
        sns.barplot(data=data, x="method", y="top1", hue="series", order=order, hue_order=series,
                    palette=palette, errorbar="sd", capsize=0.15, err_kws={"linewidth": 1}, ax=ax)
        ax.get_legend().remove()
        ax.set_title(backbone, fontsize="medium")
        ax.set_xlabel("")
        ax.set_ylabel("top-1 (%)")
        ax.tick_params(axis="x", labelrotation=35)
        for label in ax.get_xticklabels():
            label.set_horizontalalignment("right")
    _legend(fig, axes)
    return _save(fig, stem)


def _series(s: MethodSummary, summaries: Sequence[MethodSummary]) -> str:
    """The dataset name, plus the recipe only when one dataset ran under several recipes."""
    recipes = {o.recipe for o in summaries if o.dataset == s.dataset and o.backbone == s.backbone}
    return s.dataset if len(recipes) == 1 else f"{s.dataset} ({s.recipe})"


def write_plots(summaries: Sequence[MethodSummary], reported: Sequence[ReportedRow],
                plots_dir: Path) -> list[Path]:
    """Both figures as PNG and PDF; nothing when there are no records to plot."""
    if not summaries:
        return []
    import matplotlib

    matplotlib.use("Agg")
    import seaborn as sns

    plots_dir.mkdir(parents=True, exist_ok=True)
    with matplotlib.rc_context({**sns.axes_style("whitegrid"), **sns.plotting_context("notebook", 0.8)}):
        return (plot_accuracy_vs_params(summaries, reported, plots_dir / ACCURACY_PLOT)
                + plot_datasets_by_method(summaries, plots_dir / DATASETS_PLOT))


# ----------------------------------------------------------------------------------------------
# Writing and the command line


def write_text_files(out_dir: Path, files: dict[str, str]) -> list[Path]:
    """Write atomically (temp file + rename) so a reader never sees a half-written table."""
    paths = []
    for rel, text in sorted(files.items()):
        path = out_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
                f.write(text)
            os.chmod(tmp, FILE_MODE)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        paths.append(path)
    return paths


def generate(results_dir: Path | str, out_dir: Path | str | None = None,
             reference: Path | str = DEFAULT_REFERENCE, plots: bool = True) -> list[Path]:
    """Read the records under `results_dir`, write tables (and plots) under `out_dir` (default: the same)."""
    results_dir = Path(results_dir)
    out_dir = Path(out_dir) if out_dir is not None else results_dir
    summaries = summarize(load_records(results_dir), results_dir)
    reported = load_reference(reference)
    paths = write_text_files(out_dir, render_tables(summaries, reported))
    if plots:
        paths += write_plots(summaries, reported, out_dir / PLOTS_SUBDIR)
    return paths


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.report",
        description="Generate the comparison tables and plots from the run records. Reads every "
                    "record in RESULTS/runs/*.json (a malformed one is an error naming file and field, "
                    "exit 2) and writes, for each (dataset, backbone, recipe): a table of method, "
                    "trainable parameters (M and % of the backbone), GFLOPs x views, top-1/top-5 "
                    "mean ± std over seeds with n, throughput and peak memory where measured, with "
                    "published numbers for the same dataset beside it labelled 'reported'. Outputs: "
                    "OUT/README.md (Markdown), OUT/tables/*.tex and *.csv, OUT/plots/*.png and *.pdf. "
                    "The same records always give byte-identical tables.")
    parser.add_argument("--results", type=Path, default=DEFAULT_RESULTS,
                        help="results directory holding runs/*.json (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=None,
                        help="where README.md, tables/ and plots/ go (default: the --results directory)")
    parser.add_argument("--reference", type=Path, default=DEFAULT_REFERENCE,
                        help="CSV of published numbers set beside the reproduced ones "
                             "(default: the repository's results/reference/published.csv)")
    parser.add_argument("--no-plots", action="store_true", help="write the tables only (no matplotlib)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        paths = generate(args.results, args.out, args.reference, plots=not args.no_plots)
    except (RecordError, ReportError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for path in paths:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
