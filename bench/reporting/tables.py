"""The generated tables: Markdown (results/README.md), LaTeX and CSV, one per (dataset, backbone, recipe).

The same records give byte-identical tables (fixed sort orders and number formats, no timestamps, no
absolute paths), which is what lets ``bench.check`` fail on a hand-edited table.
"""
from __future__ import annotations

import csv
import io
import math
from typing import Callable, Iterable, Sequence

from tabulate import tabulate

from bench.reporting.inputs import Report
from bench.reporting.layout import (
    ACCURACY_PLOT,
    DATASETS_PLOT,
    PAIRED_PLOT,
    PLOTS_SUBDIR,
    README_NAME,
    TABLES_SUBDIR,
    curves_plot,
    safe_name,
    tuning_plot,
)
from bench.reporting.reference import REFERENCE_COLUMNS, ReportedRow
from bench.reporting.stats import BOOTSTRAP_REPLICATES, Interval
from bench.reporting.summary import MethodSummary, group_summaries
from bench.reporting.tuning import notes, point_cell, point_text, status, value_text
from bench.reporting.uncertainty import GroupAnalysis, Intervals, PairedRow
from bench.tuning.select import Sweep

_DASH = "—"


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


def _interval(interval: Interval | None, signed: bool = False) -> str:
    if interval is None:
        return _DASH
    number = "{:+.2f}" if signed else "{:.2f}"
    return f"[{number.format(interval.low)}, {number.format(interval.high)}]"


def _video_interval(s: MethodSummary, intervals: Intervals) -> str:
    """The interval over videos, saying how many seeds it pools when that is fewer than the row's."""
    text = _interval(intervals.videos)
    return text if intervals.videos is None or intervals.video_seeds == s.n else f"{text} ({intervals.video_seeds} seeds)"


def _videos(s: MethodSummary, intervals: Intervals) -> str:
    if intervals.videos_n is not None:
        return str(intervals.videos_n)
    return "/".join(map(str, s.val_videos)) if s.val_videos else _DASH


def _p_value(p: float) -> str:
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


_MEASURED_HEADERS = ("method", "trainable params (M)", "% of backbone", "GFLOPs × views",
                     "top-1 (%)", "top-1 95% CI, seeds", "top-1 95% CI, videos", "top-5 (%)", "n seeds",
                     "n videos", "throughput (clips/s)", "peak memory (GiB)")


_MEASURED_ALIGN = ("left",) + ("right",) * 11


_PAIRED_ALIGN = ("left",) + ("right",) * 6


_REPORTED_HEADERS = ("method", "backbone", "frames", "trainable params (M)", "GFLOPs × views",
                     "top-1 (%)", "top-5 (%)", "source", "setting")


_REPORTED_ALIGN = ("left", "left", "right", "right", "right", "right", "right", "left", "left")


_CSV_COLUMNS = ("dataset", "backbone", "recipe", "method", "n", "seeds", "top1_mean", "top1_std",
                "top1_ci_seeds_low", "top1_ci_seeds_high", "top1_ci_videos_low", "top1_ci_videos_high",
                "video_ci_seeds", "n_videos", "top5_mean", "top5_std", "params_trainable", "params_total",
                "params_backbone", "params_percent_of_backbone", "gflops_per_view", "views",
                "throughput_clips_per_s", "peak_memory_gib")


_PAIRED_CSV_COLUMNS = ("dataset", "backbone", "recipe", "method", "reference", "difference", "ci_low", "ci_high",
                       "p_value", "distinguishable", "seeds", "videos", "replicates", "note")


def _measured_cells(s: MethodSummary, intervals: Intervals) -> tuple[str, ...]:
    return (
        s.method, _sig(s.params_trainable / 1e6), _opt(s.params_percent, lambda p: f"{_sig(p)}%"),
        _gflops_views(s.gflops_per_view, s.views), _mean_std(s.top1_mean, s.top1_std),
        _interval(intervals.seeds), _video_interval(s, intervals),
        _mean_std(s.top5_mean, s.top5_std), str(s.n), _videos(s, intervals),
        _opt(s.throughput_clips_per_s, lambda t: f"{t:.1f}"),
        _opt(s.peak_memory_bytes, lambda b: f"{b / 2**30:.2f}"),
    )


_PAIRED_HEADERS = ("method", "Δ top-1 vs reference (points)", "95% CI", "p", "distinguishable at 5%",
                   "seeds", "videos")


def _paired_cells(row: PairedRow) -> tuple[str, ...]:
    r = row.result
    if r is None:
        return (row.method, _DASH, _DASH, _DASH, f"not tested: {row.reason}", _DASH, _DASH)
    return (row.method, f"{r.difference:+.2f}", _interval(r.interval, signed=True), _p_value(r.p_value),
            "yes" if r.distinguishable else "no", str(r.seeds), str(r.videos))


def _paired_csv_row(group: tuple[str, str, str], reference: str, row: PairedRow) -> tuple[object, ...]:
    r = row.result
    if r is None:
        return (*group, row.method, reference, None, None, None, None, None, None, None, None, row.reason)
    return (*group, row.method, reference, r.difference, r.interval.low, r.interval.high, r.p_value,
            "yes" if r.distinguishable else "no", r.seeds, r.videos, r.replicates, None)


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
        text = (text.replace("±", r"$\pm$").replace("×", r"$\times$").replace("Δ", r"$\Delta$")
                .replace(_DASH, "--"))
    return text + "\n"


def _csv_text(rows: Iterable[Sequence[object]], columns: Sequence[str]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows([_csv_value(v) for v in row] for row in rows)
    return out.getvalue()


def _csv_row(s: MethodSummary, intervals: Intervals) -> tuple[object, ...]:
    seeds, videos = intervals.seeds, intervals.videos
    return (
        s.dataset, s.backbone, s.recipe, s.method, s.n, " ".join(map(str, s.seeds)), s.top1_mean,
        s.top1_std, seeds and seeds.low, seeds and seeds.high, videos and videos.low, videos and videos.high,
        intervals.video_seeds, intervals.videos_n, s.top5_mean, s.top5_std, s.params_trainable,
        s.params_total, s.params_backbone, s.params_percent, s.gflops_per_view, s.views,
        s.throughput_clips_per_s, None if s.peak_memory_bytes is None else s.peak_memory_bytes / 2**30,
    )


def _reported_csv_row(r: ReportedRow) -> tuple[object, ...]:
    return (r.method, r.dataset, r.backbone, r.frames, r.top1, r.top5, r.params_trainable_m,
            r.gflops_per_view, r.views, r.source, r.reference, r.setting)


_GENERATED = ("Generated by `python -m bench.report` from the run records in `runs/`. Do not edit: "
              "`python -m bench.check` fails when this file differs from what the records generate.")


_DEFINITIONS = f"""\
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
- **top-1 95% CI, seeds**: Student t interval of the mean over the n seeds (training noise); none
  for a single seed.
- **top-1 95% CI, videos**: percentile bootstrap over the validation videos ({BOOTSTRAP_REPLICATES}
  replicates, fixed seed), the seeds' predictions pooled: how much top-1 would move on another
  validation set of the same size (the test-set noise that different copies of Kinetics show). When
  it pools fewer seeds than n (some records have no per-video outputs) it says how many.
- **n videos**: validation videos behind every top-1 figure of the row.
- **paired differences**: each method's top-1 minus the reference's on the same videos and seeds,
  with a 95% interval and a two-sided p-value from a paired bootstrap over videos and seeds (every
  replicate redraws the videos and the seeds, the same draws for both). *Distinguishable at 5%*
  means p < 0.05; "no" means the data cannot tell the two apart, not that they are equal. Two runs
  are compared only when they were evaluated on the same validation list (same videos, order and
  labels) and have per-video outputs; otherwise the row says why not.
- **throughput, peak memory**: training clips per second (mean over seeds) and peak memory (largest
  over seeds: CUDA max allocated on GPU, process max RSS on CPU), as the runs recorded them; "—"
  when no run measured them.
- **reported** rows are published numbers (`reference/published.csv`, with their source and
  setting), not reproduced by this suite and not trained under its matched recipe.
"""


def _paired_section(group: tuple[str, str, str], analysis: GroupAnalysis) -> tuple[list[str], list[str], str | None]:
    """The group's paired-differences table: Markdown lines, LaTeX lines, and the CSV (None without a reference)."""
    md = [f"- {note}" for note in analysis.notes] + ([""] if analysis.notes else [])
    if analysis.reference is None or not analysis.paired:
        return md, [], None
    cells = [_paired_cells(row) for row in analysis.paired]
    md += [f"Paired differences against the reference {analysis.reference} (paired bootstrap over videos and "
           "seeds):", "", _table(cells, _PAIRED_HEADERS, _PAIRED_ALIGN, "pipe")]
    tex = [f"% Paired differences against the reference {analysis.reference}",
           _table(cells, _PAIRED_HEADERS, _PAIRED_ALIGN, "latex_booktabs")]
    csv_text = _csv_text((_paired_csv_row(group, analysis.reference, row) for row in analysis.paired),
                         _PAIRED_CSV_COLUMNS)
    return md, tex, csv_text


_TUNING_HEADERS = ("configuration", "trials", "held-out videos", "held-out top-1 (%) per grid point", "chosen")


_TUNING_CSV_COLUMNS = ("dataset", "backbone", "recipe", "configuration", "point", "values", "steps", "declared",
                       "chosen", "seeds", "top1_mean", "top1_per_seed", "heldout_videos", "diverged_seeds")


def _trials(sweep: Sweep) -> str:
    seeds = len(sweep.chosen.seeds)
    return f"{len(sweep.points)} points × {seeds} seed{'s' if seeds > 1 else ''}"


def _tuning_section(group: tuple[str, str, str], sweeps: Sequence[Sweep]) -> tuple[list[str], str | None]:
    """The group's sweeps: a Markdown table with the sensitivity figure and notes, and their CSV."""
    if not sweeps:
        return [], None
    cells = [(s.declared.label, _trials(s), str(s.chosen.videos), " · ".join(point_cell(p, s) for p in s.points),
              point_text(s.chosen)) for s in sweeps]
    md = ["Tuning (`bench.run --tune`): held-out top-1, mean over the trial seeds, on a held-out part of the "
          "training list, never the validation set; the chosen point in bold (README, \"Fair tuning\"). The "
          "table's tuning column says whether a configuration is its sweep's choice, at its declared value while "
          "the sweep chose another, or not tuned.", "",
          _table(cells, _TUNING_HEADERS, ("left", "right", "right", "left", "left"), "pipe"),
          f"![Held-out top-1 against the tuned values, {' · '.join(group)}]"
          f"({PLOTS_SUBDIR}/{tuning_plot(group)}.png)", ""]
    lines = [n for s in sweeps for n in notes(s)]
    md += [f"- {line}" for line in lines] + ([""] if lines else [])
    rows = [(*group, s.declared.label, p.label, " ".join(f"{q.knob}={value_text(q.value)}" for q in p.point),
             " ".join(f"{q.knob}={q.step:+d}" for q in p.point), "yes" if p.declared else "no",
             "yes" if p is s.chosen else "no", " ".join(map(str, p.seeds)), p.mean,
             " ".join(f"{t:.4f}" for t in p.top1), p.videos, " ".join(map(str, p.diverged)))
            for s in sweeps for p in s.points]
    return md, _csv_text(rows, _TUNING_CSV_COLUMNS)


def render_tables(report: Report) -> dict[str, str]:
    """Every generated text file, keyed by its path relative to the results directory."""
    summaries, reported = report.summaries, report.reported
    files: dict[str, str] = {}
    md = [f"<!-- {_GENERATED} -->", "", "# Results", ""]
    groups = group_summaries(summaries)
    if groups:
        n_runs = sum(s.n for s in summaries)
        md += [f"{n_runs} runs: {len(summaries)} configurations over {len(groups)} "
               "(dataset, backbone, recipe) groups.", "",
               f"![Top-1 with 95% intervals against trainable parameters]({PLOTS_SUBDIR}/{ACCURACY_PLOT}.png)", "",
               f"![Top-1 per method, datasets side by side]({PLOTS_SUBDIR}/{DATASETS_PLOT}.png)", ""]
        if report.groups_with_paired_tests():
            md += [f"![Paired differences in top-1 against the reference]({PLOTS_SUBDIR}/{PAIRED_PLOT}.png)", ""]
    else:
        md += ["No run records yet: run `python -m bench.run`, then `python -m bench.report`.", ""]

    with_curves = set(report.groups_with_curves())
    for group, rows in groups.items():
        dataset, backbone, recipe = group
        stem = f"{TABLES_SUBDIR}/{safe_name(*group)}"
        analysis = report.analysis[group]
        beside = [r for r in reported if r.dataset == dataset]
        measured = [_measured_cells(s, analysis.intervals[s.method]) for s in rows]
        csv_rows = [_csv_row(s, analysis.intervals[s.method]) for s in rows]
        headers, align, csv_columns = _MEASURED_HEADERS, _MEASURED_ALIGN, _CSV_COLUMNS
        sweeps = report.sweeps_in(group)
        if sweeps:  # a column only where something was tuned: the other groups' tables stay as they were
            said = [status(s.method, sweeps) for s in rows]
            measured = [(*cells, text) for cells, text in zip(measured, said)]
            csv_rows = [(*cells, text) for cells, text in zip(csv_rows, said)]
            headers, align, csv_columns = headers + ("tuning",), align + ("left",), csv_columns + ("tuning",)
        md += [f"## {dataset} · {backbone} · recipe {recipe}", "", _table(measured, headers, align, "pipe")]
        tex = [f"% {_GENERATED}", _table(measured, headers, align, "latex_booktabs")]
        tuning_md, tuning_csv = _tuning_section(group, sweeps)
        md += tuning_md
        if tuning_csv is not None:
            files[f"{stem}__tuning.csv"] = tuning_csv
        paired_md, paired_tex, paired_csv = _paired_section(group, analysis)
        md += paired_md
        tex += paired_tex
        if paired_csv is not None:
            files[f"{stem}__paired.csv"] = paired_csv
        if group in with_curves:
            md += [f"![Training curves, {dataset} · {backbone} · {recipe}]({PLOTS_SUBDIR}/{curves_plot(group)}.png)", ""]
        if beside:
            cells = [_reported_cells(r) for r in beside]
            md += [f"Reported for {dataset} (published, not reproduced here):", "",
                   _table(cells, _REPORTED_HEADERS, _REPORTED_ALIGN, "pipe")]
            tex += ["% Reported (published, not reproduced here)",
                    _table(cells, _REPORTED_HEADERS, _REPORTED_ALIGN, "latex_booktabs")]
        else:
            md += [f"No published numbers exist for {dataset}; see the reported section below.", ""]
        files[f"{stem}.tex"] = "\n".join(tex)
        files[f"{stem}.csv"] = _csv_text(csv_rows, csv_columns)

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
            (_reported_csv_row(r) for r in reported), REFERENCE_COLUMNS)

    md.append(_DEFINITIONS)
    files[README_NAME] = "\n".join(md)
    return files
