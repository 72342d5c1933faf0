"""The generated plots (PNG and PDF): top-1 against trainable parameters, and datasets side by side.

Plots carry no metadata and have a fixed size and DPI, so the same records give the same files on one
matplotlib/FreeType version.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Iterable, Sequence

from bench.atomic import atomic_write
from bench.reporting.layout import ACCURACY_PLOT, DATASETS_PLOT
from bench.reporting.reference import ReportedRow
from bench.reporting.summary import MethodSummary, group_summaries

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
        paths.append(atomic_write(stem.with_suffix(f".{ext}"), lambda tmp, ext=ext: fig.savefig(
            tmp, format=ext, dpi=DPI, metadata=_NO_METADATA[ext])))
    plt.close(fig)
    return paths


def plot_accuracy_vs_params(summaries: Sequence[MethodSummary], reported: Sequence[ReportedRow],
                            stem: Path) -> list[Path]:
    """Top-1 against trainable parameters (log x), one panel per group; seed std as error bars,
    hollow markers for reported points (only those with a published parameter count)."""
    from matplotlib import ticker

    groups = group_summaries(summaries)
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
