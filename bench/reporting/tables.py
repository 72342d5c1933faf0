"""The generated tables: Markdown (results/README.md), LaTeX and CSV, one per (dataset, backbone, recipe).

The same records give byte-identical tables (fixed sort orders and number formats, no timestamps, no
absolute paths), which is what lets ``bench.check`` fail on a hand-edited table.
"""
from __future__ import annotations

import csv
import io
import json
import math
from typing import Callable, Iterable, Sequence

from tabulate import tabulate

from bench.config import RECIPES
from bench.reporting.costs import (
    COST_AXES,
    NO_RECORD,
    PERF_SETTING,
    STAND_IN_BACKBONE,
    STAND_INS,
    Costs,
    PerfRecord,
)
from bench.reporting.inputs import Report
from bench.reporting.layout import (
    DATASETS_PLOT,
    PAIRED_PLOT,
    PLOTS_SUBDIR,
    README_NAME,
    TABLES_SUBDIR,
    TRAINING_COST_TABLE,
    cost_plot,
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


_MEASURED_HEADERS = ("method", "trainable params (M)", "% of backbone", "inference GFLOPs × views",
                     "top-1 (%)", "top-1 95% CI, seeds", "top-1 95% CI, videos", "top-5 (%)", "n seeds",
                     "n videos", "run throughput (clips/s)", "run peak memory (GiB)", "H200 step (ms)",
                     "H200 train memory (GiB)")


_MEASURED_ALIGN = ("left",) + ("right",) * 13


_PAIRED_ALIGN = ("left",) + ("right",) * 6


_REPORTED_HEADERS = ("method", "backbone", "frames", "trainable params (M)", "GFLOPs × views",
                     "train memory (GB)", "top-1 (%)", "top-5 (%)", "source", "setting")


_REPORTED_ALIGN = ("left", "left", "right", "right", "right", "right", "right", "right", "left", "left")


_CSV_COLUMNS = ("dataset", "backbone", "recipe", "method", "n", "seeds", "top1_mean", "top1_std",
                "top1_ci_seeds_low", "top1_ci_seeds_high", "top1_ci_videos_low", "top1_ci_videos_high",
                "video_ci_seeds", "n_videos", "top5_mean", "top5_std", "params_trainable", "params_total",
                "params_backbone", "params_percent_of_backbone", "gflops_per_view", "views",
                "throughput_clips_per_s", "peak_memory_gib", "inference_gflops_per_view", "inference_form",
                "h200_stands_in_for", "h200_record", "h200_step_ms", "h200_train_memory_gib", "pareto_front")


_PAIRED_CSV_COLUMNS = ("dataset", "backbone", "recipe", "method", "reference", "difference", "ci_low", "ci_high",
                       "p_value", "distinguishable", "seeds", "videos", "replicates", "note")


def _inference(c: Costs) -> str:
    text = _gflops_views(c.inference_gflops_per_view, c.views)
    return f"{text} (merged)" if c.merged else text


def _h200(value: float | None, fmt: str) -> str:
    return NO_RECORD if value is None else format(value, fmt)


def _measured_cells(s: MethodSummary, intervals: Intervals, c: Costs) -> tuple[str, ...]:
    return (
        s.method, _sig(s.params_trainable / 1e6), _opt(s.params_percent, lambda p: f"{_sig(p)}%"),
        _inference(c), _mean_std(s.top1_mean, s.top1_std),
        _interval(intervals.seeds), _video_interval(s, intervals),
        _mean_std(s.top5_mean, s.top5_std), str(s.n), _videos(s, intervals),
        _opt(s.throughput_clips_per_s, lambda t: f"{t:.1f}"),
        _opt(s.peak_memory_bytes, lambda b: f"{b / 2**30:.2f}"),
        _h200(c.step_ms, ".1f"), _h200(c.train_memory_gib, ".2f"),
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
        _gflops_views(r.gflops_per_view, r.views), _opt(r.train_memory_gb, lambda v: f"{v:.1f}"),
        _opt(r.top1, lambda v: f"{v:.1f}"), _opt(r.top5, lambda v: f"{v:.1f}"), f"{source}, {r.reference}", r.setting,
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


def _csv_row(s: MethodSummary, intervals: Intervals, c: Costs, fronts: Sequence[str]) -> tuple[object, ...]:
    seeds, videos = intervals.seeds, intervals.videos
    return (
        s.dataset, s.backbone, s.recipe, s.method, s.n, " ".join(map(str, s.seeds)), s.top1_mean,
        s.top1_std, seeds and seeds.low, seeds and seeds.high, videos and videos.low, videos and videos.high,
        intervals.video_seeds, intervals.videos_n, s.top5_mean, s.top5_std, s.params_trainable,
        s.params_total, s.params_backbone, s.params_percent, s.gflops_per_view, s.views,
        s.throughput_clips_per_s, None if s.peak_memory_bytes is None else s.peak_memory_bytes / 2**30,
        c.inference_gflops_per_view, "merged" if c.merged else "as trained",
        c.case and c.case.stands_in_for, c.perf.file if c.perf else NO_RECORD, c.step_ms, c.train_memory_gib,
        " ".join(fronts),
    )


def _reported_csv_row(r: ReportedRow) -> tuple[object, ...]:
    return (r.method, r.dataset, r.backbone, r.frames, r.top1, r.top5, r.params_trainable_m,
            r.gflops_per_view, r.views, r.train_memory_gb, r.source, r.reference, r.setting)


_FAMILY_NAMES = {"k400": "K400", "ssv2": "SSv2"}


_PERF_SCALE = f"`bench.perf`, setting {PERF_SETTING}"


def _cost_notes(group: tuple[str, str, str], rows: Sequence[MethodSummary], report: Report) -> list[str]:
    """What the group's cost columns are, and each cost's Pareto front."""
    family = STAND_INS.get(group[0])
    if family is None:
        scale = f"each configuration's own training step, same backbone and clip ({_PERF_SCALE})"
    else:
        name = _FAMILY_NAMES.get(family, family)
        clip = RECIPES[family].clip
        scale = (f"not these {group[1]} runs but each method's training step as the {name} recipe runs it, on "
                 f"{STAND_IN_BACKBONE} at {clip.num_frames} × {clip.input_size} ({group[0]} stands in for {name}; "
                 f"{_PERF_SCALE})")
    fronts = "; ".join(f"{axis.short}: {' · '.join(report.pareto(group, axis)) or 'none measured'}"
                       for axis in COST_AXES)
    lines = [f"- Costs: inference GFLOPs × views counts each model as deployed (merged into the backbone where "
             f"the method merges). The H200 columns are {scale}; see \"Training cost at real scale\".",
             f"- Pareto front (higher mean top-1 at lower cost): {fronts}."]
    unmeasured = [s.method for s in rows if report.cost(s).perf is None]
    if unmeasured:
        lines.append(f"- {NO_RECORD} (left out of the H200 fronts and plots): {', '.join(unmeasured)}.")
    return lines + [""]


_PERF_HEADERS = ("H200 case", "method", "backbone, clips × frames × size", "trainable params (M)", "step (ms)",
                 "step / full_ft", "peak train memory (GiB)", "record")


_PERF_CSV_COLUMNS = ("label", "method", "options", "backbone", "num_frames", "input_size", "batch_size", "gpu",
                     "params_trainable", "step_ms", "step_ratio_to_full_ft", "peak_memory_gib", "record")


_MEMORY_HEADERS = ("method", "dataset", "backbone", "frames", "train memory (GB)", "source", "setting")


def _perf_cells(r: PerfRecord) -> tuple[str, ...]:
    return (r.label, r.method, _scale(r), _sig(r.params_trainable / 1e6), f"{r.step_ms:.1f}",
            _opt(r.step_ratio_to_full_ft, lambda v: f"{v:.2f}"), f"{r.peak_memory_bytes / 2**30:.2f}", r.file)


def _scale(r: PerfRecord) -> str:
    return f"{r.backbone}, {r.batch_size} clips × {r.num_frames} × {r.input_size}"


def _real_scale_section(report: Report) -> tuple[list[str], str]:
    """The H200 step records the cost columns read, with the published training memory beside them."""
    md = ["## Training cost at real scale (H200 step benchmark)", ""]
    if report.perf:
        gpus = " or ".join(sorted({r.gpu for r in report.perf}))
        scales = "; ".join(sorted({_scale(r) for r in report.perf}))
        md += [f"`python -m bench.perf` on one {gpus}, setting {PERF_SETTING} (the speed changes the engine "
               f"applies on GPU): {scales} per step, bf16 autocast, fused AdamW; the median step and "
               "`torch.cuda.max_memory_allocated` (`perf/NOTES.md` in the repository). The tables' H200 columns "
               "are these records.", "",
               _table([_perf_cells(r) for r in report.perf], _PERF_HEADERS, ("left",) * 3 + ("right",) * 4
                      + ("left",), "pipe")]
    else:
        md += [f"No H200 step records (setting {PERF_SETTING}): every H200 column says \"{NO_RECORD}\".", ""]
    memory = [r for r in report.reported if r.train_memory_gb is not None]
    if memory:
        cells = [(f"{r.method} (reported)", r.dataset, r.backbone, _opt(r.frames, str), f"{r.train_memory_gb:.1f}",
                  f"{'released code' if r.source == 'code' else r.source}, {r.reference}", r.setting) for r in memory]
        md += ["Reported training memory (published: another implementation, precision and GPU; not measured "
               "here):", "", _table(cells, _MEMORY_HEADERS, ("left", "left", "left", "right", "right", "left", "left"),
                                    "pipe")]
    rows = [(r.label, r.method, json.dumps(r.options, sort_keys=True), r.backbone, r.num_frames, r.input_size,
             r.batch_size, r.gpu, r.params_trainable, r.step_ms, r.step_ratio_to_full_ft,
             r.peak_memory_bytes / 2**30, r.file) for r in report.perf]
    return md, _csv_text(rows, _PERF_CSV_COLUMNS)


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
- **inference GFLOPs × views**: forward compute of one test view of the model *as deployed*
  (fvcore; one multiply-add = one FLOP) times the number of test views. A method that declares a
  merge (LoRA, ZeroI2V: `merge` folds its modules into the frozen weights) is counted merged, marked
  "(merged)": the report builds it, merges it and counts it. Every other method is deployed as it
  trained; its count is the run's. The CSV also keeps the trained form's count (`gflops_per_view`).
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
- **run throughput, run peak memory**: training clips per second (mean over seeds) and peak memory
  (largest over seeds: CUDA max allocated on GPU, process max RSS on CPU), as the runs recorded them;
  "—" when no run measured them.
- **H200 step, H200 train memory**: the training step time and peak training memory of the GPU
  step benchmark (`python -m bench.perf`, setting fast: one H200, CLIP ViT-B/16, 32 clips × 8 ×
  224, bf16; the section "Training cost at real scale" lists the records). A configuration on the
  benchmarked backbone and clip takes the record of its own method and options; one on the synthetic
  world takes the record of its method as the real recipe its task imitates runs it (synth_appearance:
  K400, synth_motion: SSv2), the suite's real-scale cost of that method, not its synthetic run's.
  Options are compared resolved (presets expanded, defaults filled in), and a synthetic
  configuration with other options than its recipe declares (a tuned width) stands for none. "no
  H200 record" where no record matches.
- **Pareto front**: the configurations of a group that no other one beats on both mean top-1 and
  the cost (as good or better on each, strictly on one), listed by increasing cost under each table
  and ringed in the accuracy-vs-cost plots; configurations without the cost take no part.
- **reported** rows are published numbers (`reference/published.csv`, with their source and
  setting), not reproduced by this suite and not trained under its matched recipe. Published
  training memory (GB, as printed) comes from other code on other GPUs, so it stands beside the H200
  records and is never plotted with them.
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
               *(line for axis in COST_AXES for line in (
                   f"![Top-1 with 95% intervals against {axis.short}, the Pareto front marked]"
                   f"({PLOTS_SUBDIR}/{cost_plot(axis.name)}.png)", "")),
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
        fronts = {axis.name: report.pareto(group, axis) for axis in COST_AXES}
        measured = [_measured_cells(s, analysis.intervals[s.method], report.cost(s)) for s in rows]
        csv_rows = [_csv_row(s, analysis.intervals[s.method], report.cost(s),
                             [name for name, front in fronts.items() if s.method in front]) for s in rows]
        headers, align, csv_columns = _MEASURED_HEADERS, _MEASURED_ALIGN, _CSV_COLUMNS
        sweeps = report.sweeps_in(group)
        if sweeps:  # a column only where something was tuned: the other groups' tables stay as they were
            said = [status(s.method, sweeps) for s in rows]
            measured = [(*cells, text) for cells, text in zip(measured, said)]
            csv_rows = [(*cells, text) for cells, text in zip(csv_rows, said)]
            headers, align, csv_columns = headers + ("tuning",), align + ("left",), csv_columns + ("tuning",)
        md += [f"## {dataset} · {backbone} · recipe {recipe}", "", _table(measured, headers, align, "pipe")]
        md += _cost_notes(group, rows, report)
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

    cost_md, cost_csv = _real_scale_section(report)
    md += cost_md
    files[f"{TABLES_SUBDIR}/{TRAINING_COST_TABLE}.csv"] = cost_csv

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
