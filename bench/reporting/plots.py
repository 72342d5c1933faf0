"""The generated plots (PNG and PDF): top-1 with its intervals against each cost (trainable parameters,
inference GFLOPs x views, H200 step time and training memory) with the Pareto front marked, datasets
side by side, the paired differences against the reference method, each group's training curves and,
where methods were tuned, each group's sensitivity to the tuned values.

Plots carry no metadata and have a fixed size and DPI, so the same records give the same files on one
matplotlib/FreeType version.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from bench.atomic import atomic_write
from bench.reporting.costs import COST_AXES, NO_RECORD, CostAxis
from bench.reporting.inputs import Report
from bench.reporting.layout import DATASETS_PLOT, PAIRED_PLOT, cost_plot, curves_plot, tuning_plot
from bench.reporting.summary import MethodSummary, group_summaries
from bench.tuning.select import Sweep

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


CURVE_PANELS = ("loss", "lr", "clips_per_s", "top1")  # the training-curves figure, two per row


def figure_size_in(n_panels: int, max_columns: int = MAX_PANEL_COLUMNS) -> tuple[float, float]:
    """Figure size in inches for `n_panels` panels (at most `max_columns` per row) plus the legend."""
    cols = min(max(n_panels, 1), max_columns)
    rows = math.ceil(max(n_panels, 1) / max_columns)
    return (cols * PANEL_SIZE_IN[0] + LEGEND_WIDTH_IN, rows * PANEL_SIZE_IN[1])


def figure_size_px(n_panels: int, max_columns: int = MAX_PANEL_COLUMNS) -> tuple[int, int]:
    w, h = figure_size_in(n_panels, max_columns)
    return (round(w * DPI), round(h * DPI))


def _method_styles(methods: Iterable[str], others: Iterable[str] = ()) -> dict[str, tuple[tuple[float, float, float], str]]:
    """A fixed colour and marker per method, shared by every figure: the measured `methods` take the
    first (most distinct) colours of the palette, `others` (reported ones) the rest."""
    import seaborn as sns

    measured = sorted(set(methods))
    names = measured + sorted(set(others) - set(measured))
    palette = sns.color_palette("colorblind" if len(names) <= 10 else "husl", len(names))
    return {m: (palette[i], _MARKERS[i % len(_MARKERS)]) for i, m in enumerate(names)}


def _report_styles(report: Report) -> dict[str, tuple[tuple[float, float, float], str]]:
    """Styles over every method the report names, so a method looks the same in every figure."""
    return _method_styles([s.method for s in report.summaries], [r.method for r in report.reported])


def _panels(n: int, max_columns: int = MAX_PANEL_COLUMNS):
    import matplotlib.pyplot as plt

    cols = min(n, max_columns)
    rows = math.ceil(n / max_columns)
    fig = plt.figure(figsize=figure_size_in(n, max_columns), dpi=DPI, layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes[:n]


def _legend(fig, axes, explain: Sequence[tuple[object, str]] = ()) -> None:
    """One legend for the figure, outside the panels, each label once, in sorted order, then the
    entries in `explain` (what the marks mean) as they are given."""
    entries: dict[str, object] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            entries.setdefault(label, handle)
    labels = sorted(entries)
    fig.legend([entries[k] for k in labels] + [h for h, _ in explain], labels + [text for _, text in explain],
               loc="outside right upper", fontsize="small", frameon=False)


def _log_params_axis(ax) -> None:
    from matplotlib import ticker

    ax.set_xscale("log")
    ax.xaxis.set_major_locator(ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(ticker.NullFormatter())


def _save(fig, stem: Path) -> list[Path]:
    import matplotlib.pyplot as plt

    paths = []
    for ext in ("png", "pdf"):
        paths.append(atomic_write(stem.parent / f"{stem.name}.{ext}", lambda tmp, ext=ext: fig.savefig(
            tmp, format=ext, dpi=DPI, metadata=_NO_METADATA[ext])))
    plt.close(fig)
    return paths


def plot_accuracy_vs_cost(report: Report, axis: CostAxis, stem: Path) -> list[Path]:
    """Top-1 against one cost (``axis``), one panel per group. Each point is the seed mean; the thin
    capped bar its 95% interval over seeds (Student t), the wide pale bar its 95% interval over videos
    (bootstrap). Ringed points joined by a dashed staircase: the Pareto front (higher top-1, lower
    cost) of the measured configurations. Hollow markers: reported points with a published figure on
    this axis (never part of the front). Configurations without the cost are named in the panel."""
    from matplotlib.lines import Line2D

    groups = group_summaries(report.summaries)
    styles = _report_styles(report)
    fig, axes = _panels(len(groups))
    for ax, (group, rows) in zip(axes, groups.items()):
        dataset, backbone, recipe = group
        points = {}
        for s in rows:
            x = axis.of(report.cost(s))
            if x is None:
                continue
            color, marker = styles[s.method]
            points[s.method] = (x, s.top1_mean)
            intervals = report.analysis[group].intervals[s.method]
            if intervals.videos is not None:
                ax.vlines(x, intervals.videos.low, intervals.videos.high, colors=[color], linewidths=7, alpha=0.3)
            seeds = intervals.seeds
            yerr = None if seeds is None else [[s.top1_mean - seeds.low], [seeds.high - s.top1_mean]]
            ax.errorbar(x, s.top1_mean, yerr=yerr, fmt=marker, color=color, markersize=7, capsize=3, label=s.method)
        front = [points[m] for m in report.pareto(group, axis)]
        if front:
            ax.step(*zip(*front), where="post", color="black", linewidth=0.9, linestyle="--", zorder=1)
            ax.scatter(*zip(*front), s=170, facecolors="none", edgecolors="black", linewidths=1.0, zorder=3)
        for r in report.reported:
            x = axis.reported(r)
            if r.dataset == dataset and x is not None and r.top1 is not None:
                color, marker = styles[r.method]
                ax.scatter(x, r.top1, marker=marker, s=60, facecolors="none", edgecolors=color, linewidths=1.5,
                           label=f"{r.method} (reported)")
        missing = [s.method for s in rows if s.method not in points]
        if missing:
            ax.text(0.01, 0.01, f"{NO_RECORD}: {', '.join(missing)}", transform=ax.transAxes, fontsize="x-small",
                    va="bottom", ha="left", wrap=True)
        if axis.log:
            _log_params_axis(ax)
        ax.set_title(f"{dataset} · {backbone} · {recipe}", fontsize="medium")
        ax.set_xlabel(axis.label, fontsize="small")
        ax.set_ylabel("top-1 (%)")
    gray = (0.4, 0.4, 0.4)
    _legend(fig, axes, [
        (Line2D([], [], color=gray, marker="|", markersize=10, linestyle="none"), "95% CI over seeds (t)"),
        (Line2D([], [], color=gray, linewidth=7, alpha=0.3), "95% CI over videos (bootstrap)"),
        (Line2D([], [], color="black", marker="o", markersize=11, markerfacecolor="none", linestyle="--",
                linewidth=0.9), "Pareto front (higher top-1, lower cost)")])
    return _save(fig, stem)


def plot_paired_differences(report: Report, stem: Path) -> list[Path]:
    """Each method's top-1 minus the reference's, with the 95% paired-bootstrap interval, one panel
    per group that has paired tests; filled markers are distinguishable at 5%, hollow ones are not."""
    from matplotlib.lines import Line2D

    groups = report.groups_with_paired_tests()
    styles = _report_styles(report)
    fig, axes = _panels(len(groups))
    for ax, group in zip(axes, groups):
        analysis = report.analysis[group]
        tested = [row for row in analysis.paired if row.result is not None]
        for y, row in enumerate(tested):
            r, (color, marker) = row.result, styles[row.method]
            ax.errorbar(r.difference, y, xerr=[[r.difference - r.interval.low], [r.interval.high - r.difference]],
                        fmt=marker, color=color, markersize=7, capsize=3, label=row.method,
                        markerfacecolor=color if r.distinguishable else "white")
        ax.axvline(0.0, color="black", linewidth=0.8)
        ax.set_yticks(range(len(tested)), [_wrap_label(row.method) for row in tested], fontsize="x-small")
        ax.set_ylim(-0.7, len(tested) - 0.3)
        ax.invert_yaxis()
        dataset, backbone, recipe = group
        ax.set_title(f"{dataset} · {backbone} · {recipe}", fontsize="medium")
        ax.set_xlabel(f"top-1 minus {analysis.reference.split('[', 1)[0]} (points)")
    gray = (0.4, 0.4, 0.4)
    _legend(fig, axes, [
        (Line2D([], [], color=gray, marker="o", linestyle="none"), "distinguishable at 5%"),
        (Line2D([], [], color=gray, marker="o", markerfacecolor="white", linestyle="none"), "not distinguishable"),
        (Line2D([], [], color=gray, marker="|", markersize=10, linestyle="none"), "95% CI (paired bootstrap)")])
    return _save(fig, stem)


def _wrap_label(label: str) -> str:
    """A method label on two lines, id over options, so long option lists do not squeeze the panel."""
    method, bracket, options = label.partition("[")
    return f"{method}\n[{options}" if bracket else method


def _seed_band(runs: list[tuple[int, dict]], part: str, column: str) -> tuple[np.ndarray, np.ndarray] | None:
    """(steps, values seeds x steps) on the steps every seed logged; None when they share none."""
    tables = [curves[part] for _, curves in runs]
    steps = sorted(set.intersection(*(set(t["step"]) for t in tables)))
    if not steps:
        return None
    values = np.array([[dict(zip(t["step"], t[column]))[step] for step in steps] for t in tables])
    return np.asarray(steps), values


def plot_training_curves(report: Report, group, stem: Path) -> list[Path]:
    """Loss, learning rate, throughput and top-1 over training for one group: a line per method (the
    mean over seeds), shaded between the lowest and highest seed."""
    from matplotlib.patches import Patch

    rows = group_summaries(report.summaries)[group]
    styles = _report_styles(report)
    titles = {"loss": ("training loss (interval mean)", "train"), "lr": ("learning rate", "train"),
              "clips_per_s": ("training throughput (clips/s)", "train"), "top1": ("validation top-1 (%)", "eval")}
    fig, axes = _panels(len(CURVE_PANELS), max_columns=2)
    for ax, column in zip(axes, CURVE_PANELS):
        title, part = titles[column]
        for s in rows:
            runs = report.curves(s)
            band = _seed_band(runs, part, column) if runs else None
            if band is None:
                continue
            steps, values = band
            epochs = steps / runs[0][1]["steps_per_epoch"]
            color, marker = styles[s.method]
            ax.plot(epochs, values.mean(axis=0), color=color, marker=marker if part == "eval" else None,
                    markersize=4, linewidth=1.3, label=s.method)
            if len(runs) > 1:
                ax.fill_between(epochs, values.min(axis=0), values.max(axis=0), color=color, alpha=0.2, linewidth=0)
        ax.set_title(title, fontsize="medium")
        ax.set_xlabel("epoch")
    dataset, backbone, recipe = group
    fig.suptitle(f"{dataset} · {backbone} · {recipe}: mean over seeds", fontsize="medium")
    _legend(fig, axes, [(Patch(color=(0.4, 0.4, 0.4), alpha=0.2), "range over seeds")])
    return _save(fig, stem)


def _slice(sweep: Sweep, knob: str) -> list:
    """The sweep's points along ``knob``, every other knob at its chosen value."""
    others = {p.knob: p.value for p in sweep.chosen.point if p.knob != knob}
    return [pt for pt in sweep.points if all(pt.value(k) == v for k, v in others.items())]


def plot_sensitivity(report: Report, group, stem: Path) -> list[Path]:
    """Held-out top-1 of the tuning trials against each tuned value (log x), one panel per knob and a
    line per configuration: the mean over the trial seeds, a bar over their range; the chosen point
    starred, the declared one ringed, a diverged point crossed."""
    from matplotlib.lines import Line2D

    sweeps = report.sweeps_in(group)
    knobs = sorted({k for s in sweeps for k in s.knobs})
    styles = _method_styles([s.declared.label for s in sweeps])
    fig, axes = _panels(len(knobs))
    for ax, knob in zip(axes, knobs):
        for sweep in (s for s in sweeps if knob in s.knobs):
            color, marker = styles[sweep.declared.label]
            points = _slice(sweep, knob)
            x = [pt.value(knob) for pt in points]
            ax.plot(x, [pt.mean for pt in points], color=color, marker=marker, markersize=5, linewidth=1.3,
                    label=sweep.declared.label)
            ax.vlines(x, [min(pt.top1) for pt in points], [max(pt.top1) for pt in points], colors=[color], linewidths=1)
            for pt in points:
                if pt is sweep.chosen:
                    ax.scatter(pt.value(knob), pt.mean, marker="*", s=220, color=color, edgecolors="black", zorder=3)
                if pt.declared:
                    ax.scatter(pt.value(knob), pt.mean, marker="o", s=140, facecolors="none", edgecolors="black",
                               zorder=3)
                if pt.diverged:
                    ax.scatter(pt.value(knob), pt.mean, marker="x", s=80, color="black", zorder=3)
        _log_params_axis(ax)
        ax.set_xlabel(f"{knob} (log scale)")
        ax.set_ylabel("held-out top-1 (%)")
        ax.set_title(f"{' · '.join(group)}", fontsize="medium")
    _legend(fig, axes, [
        (Line2D([], [], color="gray", marker="*", markersize=12, markeredgecolor="black", linestyle="none"), "chosen"),
        (Line2D([], [], marker="o", markersize=10, markerfacecolor="none", markeredgecolor="black", linestyle="none"),
         "declared"),
        (Line2D([], [], marker="x", markersize=8, color="black", linestyle="none"), "diverged (no video right)"),
        (Line2D([], [], color="gray", marker="|", markersize=10, linestyle="none"), "range over trial seeds")])
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


def plot_stems(report: Report) -> list[str]:
    """The figures ``write_plots`` makes for ``report`` (file names without the extension)."""
    if not report.summaries:
        return []
    stems = ([cost_plot(axis.name) for axis in COST_AXES] + [DATASETS_PLOT]
             + ([PAIRED_PLOT] if report.groups_with_paired_tests() else []))
    return (stems + [curves_plot(group) for group in report.groups_with_curves()]
            + [tuning_plot(group) for group in report.groups_with_sweeps()])


def write_plots(report: Report, plots_dir: Path) -> list[Path]:
    """Every figure as PNG and PDF; nothing when there are no records to plot, and no paired or
    curves figure where nothing was measured for it."""
    if not report.summaries:
        return []
    import matplotlib

    matplotlib.use("Agg")
    import seaborn as sns

    plots_dir.mkdir(parents=True, exist_ok=True)
    with matplotlib.rc_context({**sns.axes_style("whitegrid"), **sns.plotting_context("notebook", 0.8)}):
        paths = [path for axis in COST_AXES
                 for path in plot_accuracy_vs_cost(report, axis, plots_dir / cost_plot(axis.name))]
        paths += plot_datasets_by_method(report.summaries, plots_dir / DATASETS_PLOT)
        if report.groups_with_paired_tests():
            paths += plot_paired_differences(report, plots_dir / PAIRED_PLOT)
        for group in report.groups_with_curves():
            paths += plot_training_curves(report, group, plots_dir / curves_plot(group))
        for group in report.groups_with_sweeps():
            paths += plot_sensitivity(report, group, plots_dir / tuning_plot(group))
        return paths
