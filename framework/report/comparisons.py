"""Engines side by side: throughput against batch size, latency bars, tail latency, and accuracy against latency.

Only valid results are drawn (an invalid one is never shown as a winner); the titles say how many were left
out. GPU engines are shown with latency-all (host clock, copies included) next to latency-model (device
time) where the chart has room for both. Latency axes go logarithmic when engines differ by more than 20x
(``style.wants_log``), and say so. Throughput is batch / median latency, so it agrees with the median bars
(the timed loop's wall-time figure counts every outlier; it is drawn apart, named as such).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from framework.measure.stats import min_samples_for_percentile
from framework.report.style import (
    batch_sizes,
    figure,
    legend_beside,
    line_style,
    marker,
    marker_legend,
    of_batch,
    pyplot,
    result_color,
    save_figure,
    scaled_label,
    series_color,
    series_key,
    series_label,
    set_scale,
    suptitle,
    wants_log,
)  # fmt: skip
from framework.results.record import LatencyStats, Result


def valid_only(results: list[Result], title: str) -> tuple[list[Result], str]:
    """The valid results, and the title saying how many others were left out."""
    valid = [r for r in results if r.is_valid and r.latency is not None]
    left_out = len(results) - len(valid)
    return valid, title + (f" ({left_out} invalid results left out)" if left_out else "")


def _series(results: list[Result]) -> dict[tuple, list[Result]]:
    """Each line of a figure against the batch size: an engine and precision (on one GPU kind, with ``--devices``)."""
    series: dict[tuple, list[Result]] = {}
    for result in sorted(results, key=lambda r: (*series_key(r), r.experiment.batch_size)):
        series.setdefault(series_key(result), []).append(result)
    return series


def median_throughput(stats: LatencyStats | None, batch: int) -> float:
    """Items per second at the median latency: what the median bars say, per item."""
    return batch * 1000.0 / stats.median_ms if stats and stats.median_ms > 0 else np.nan


def draw_throughput_vs_batch(results: list[Result], path: Path, title: str, options) -> bool:
    valid, title = valid_only(results, title)
    if not valid:
        return False
    fig, axes = figure(1, 1, (12, 5.5))
    ax = axes[0][0]
    for (engine, precision, _), points in _series(valid).items():
        style, name = dict(color=series_color(engine, precision), ls=line_style(precision)), points[0].experiment.series
        batches = [r.experiment.batch_size for r in points]
        ax.plot(batches, [median_throughput(r.latency, r.experiment.batch_size) for r in points], marker="o", label=name, **style)
        ax.scatter(batches, [r.latency.throughput_items_per_s for r in points], marker="x", s=30, color=style["color"], zorder=3)
        model = [(r.experiment.batch_size, median_throughput(r.latency_model, r.experiment.batch_size)) for r in points if r.latency_model]
        if model:
            ax.plot(*zip(*model), marker="^", alpha=0.6, label=f"{name} (model only, device time)", **style)
    ax.set_xscale("log", base=2)
    set_scale(ax, "y", True)
    measured = batch_sizes(valid)
    ax.set_xticks(measured, [str(b) for b in measured])  # the batch sizes measured, not powers of two
    ax.tick_params(axis="x", which="minor", bottom=False, labelbottom=False)
    ax.set(xlabel="batch size", ylabel="throughput (items/s = batch / median latency), log scale")
    suptitle(fig, f"{title}: throughput against batch size")
    ax.grid(alpha=0.3, which="both")
    handles, labels = ax.get_legend_handles_labels()
    wall = pyplot().Line2D([], [], color="grey", marker="x", ls="none")
    legend_beside(ax, [*handles, wall], [*labels, "x: wall time of the timed loop\n(items / total time, outliers included)"])
    save_figure(fig, path)
    return True


def _median_bars(ax, chosen: list[Result], stats: list[LatencyStats | None], offset: float, width: float, **style) -> None:
    """Median bars at ``offset`` from each tick with their 99% confidence interval (none where n is too small)."""
    heights = [s.median_ms if s else np.nan for s in stats]
    low = [s.median_ms - s.median_ci99_low_ms if s and s.median_ci99_low_ms is not None else 0 for s in stats]
    high = [s.median_ci99_high_ms - s.median_ms if s and s.median_ci99_high_ms is not None else 0 for s in stats]
    bars = ax.bar(np.arange(len(chosen)) + offset, heights, width=width, color=[result_color(r) for r in chosen], edgecolor="black",
                  linewidth=0.5, yerr=[low, high], capsize=3, **style)  # fmt: skip
    ax.bar_label(bars, [f"{h:.3g}" if np.isfinite(h) else "" for h in heights], fontsize=7, padding=2)


def draw_latency_bars(results: list[Result], path: Path, title: str, options) -> bool:
    valid, title = valid_only(results, title)
    if not valid:
        return False
    batches = batch_sizes(valid)
    fig, axes = figure(len(batches), 1, (max(8, 1.3 * len(valid) / len(batches) + 4), 3.8 * len(batches) + 0.6))
    for ax, batch in zip(axes[:, 0], batches):
        chosen = of_batch(valid, batch)
        kinds = [("latency", "", "latency-all (host clock)")]
        if any(r.latency_model for r in chosen):
            kinds.append(("latency_model", "//", "latency-model (device time)"))
        width = 0.8 / len(kinds)
        for index, (field, kind_hatch, name) in enumerate(kinds):
            offset = (index - (len(kinds) - 1) / 2) * width
            _median_bars(ax, chosen, [getattr(r, field) for r in chosen], offset, width, hatch=kind_hatch, label=name)
        log = wants_log(getattr(r, field).median_ms for r in chosen for field, _, _ in kinds if getattr(r, field))
        ax.set_xticks(np.arange(len(chosen)), [series_label(r) for r in chosen], rotation=20, ha="right", fontsize=8)
        set_scale(ax, "y", log)
        ax.set(ylabel=scaled_label("median latency (ms), 99% CI", log), title=f"batch size {batch}")
        ax.margins(y=0.15)  # room for the value above the tallest bar
        ax.grid(alpha=0.3, axis="y", which="both" if log else "major")
        if len(kinds) > 1:  # the key in grey: the bars' colours are the series'
            key = [pyplot().Rectangle((0, 0), 1, 1, facecolor="lightgrey", edgecolor="black", hatch=h) for _, h, _ in kinds]
            ax.legend(key, [name for _, _, name in kinds], fontsize=8)
    kinds_text = "plain: latency-all; hatched: latency-model, GPU engines" if any(r.latency_model for r in valid) else "host clock"
    suptitle(fig, f"{title}: median latency per engine ({kinds_text})")
    save_figure(fig, path)
    return True


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats on both axes (lower x, higher y), by rising x."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best = [], -np.inf
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


AGREEMENT_FLOOR = 1e-9  # 1 - cosine of identical outputs is 0, which a log axis cannot show


def _quality(result: Result, with_accuracy: bool) -> float | None:
    if with_accuracy:
        return result.accuracy.top1
    return result.agreement.worst.cosine_similarity if result.agreement else None


def draw_accuracy_vs_latency(results: list[Result], path: Path, title: str, options) -> bool:
    """Top-1 accuracy where the model has a dataset, else agreement (cosine similarity with PyTorch fp32).

    Points are named in one legend (colour: engine and precision, marker: precision); only the Pareto front's
    points carry a label beside them, since many engines often tie on accuracy and their labels would overlap.
    Tied points (same accuracy, near-same latency) are nudged apart sideways by a few pixels so both show.
    Agreement is drawn as 1 - cosine on a log axis, better upwards: cosines like 0.99999 and 0.9999999 are
    otherwise one line."""
    valid, title = valid_only(results, title)
    with_accuracy = bool(valid) and all(r.accuracy for r in valid)
    valid = [r for r in valid if _quality(r, with_accuracy) is not None]
    if not valid:
        return False
    metric = "top-1 accuracy on the dataset" if with_accuracy else "agreement with PyTorch fp32"
    batches = batch_sizes(valid)
    fig, axes = figure(1, len(batches), (5.5 * len(batches) + 3, 5.6))
    legend: dict[str, object] = {}
    for ax, batch in zip(axes[0], batches):
        steps = [s for s in getattr(options, "search_steps", ()) if s.experiment.batch_size == batch]
        legend.update(_accuracy_axes(ax, sorted(of_batch(valid, batch), key=series_key), batch, with_accuracy, metric, steps))
    handles = [*legend.values(), pyplot().Line2D([], [], color="black", lw=1, ls="--")]
    legend_beside(axes[0][-1], handles, [*legend, "Pareto front (faster and as accurate)"])
    suptitle(fig, f"{title}: {metric} against latency ({marker_legend()}; tied points nudged apart sideways)")
    save_figure(fig, path)
    return True


TIE_SHARE = 0.015  # points closer than this share of both axes' spans (about a marker's width) are tied: drawn side by side
TIE_STEP_PT = 8.0  # how far apart tied points are drawn, in points (a marker is 7-10 points wide)


def tie_offsets(points: list[tuple[float, float]], log_x: bool = False, log_y: bool = False, span_y: float | None = None) -> list[float]:
    """Horizontal offsets (points) that draw tied points side by side, centred on where they are; 0 for the rest.
    Ties are judged on the axes as drawn: a share of each axis' span (in log space on a log axis); ``span_y``
    is the y axis' span where its limits are set apart from the points (accuracy's axis)."""
    xs = np.log10([p[0] for p in points]) if log_x else np.array([p[0] for p in points], dtype=float)
    ys = np.log10([p[1] for p in points]) if log_y else np.array([p[1] for p in points], dtype=float)
    span_x = max(float(np.ptp(xs)), 1e-12) if len(xs) else 1.0
    span_y = span_y or (max(float(np.ptp(ys)), 1e-12) if len(ys) else 1.0)
    groups: list[list[int]] = []
    for i in np.argsort(xs, kind="stable"):
        tied = lambda j: abs(xs[i] - xs[j]) < TIE_SHARE * span_x and abs(ys[i] - ys[j]) <= TIE_SHARE * span_y  # noqa: E731
        group = next((g for g in groups if all(tied(j) for j in g)), None)
        if group is None:
            groups.append([int(i)])
        else:
            group.append(int(i))
    offsets = [0.0] * len(points)
    for group in groups:
        for k, i in enumerate(group):
            offsets[i] = (k - (len(group) - 1) / 2) * TIE_STEP_PT
    return offsets


def latency_limits(values: list[float], log: bool, margin: float = 0.15) -> tuple[float, float]:
    """An x range holding every value with ``margin`` of the span either side (of the value itself for one point)."""
    v = np.log10(values) if log else np.asarray(values, dtype=float)
    low, high = float(v.min()), float(v.max())
    pad = margin * (high - low) if high > low else (0.3 if log else max(abs(high) * margin, 1e-9))
    low, high = low - pad, high + pad
    return (10**low, 10**high) if log else (max(low, 0.0) if v.min() >= 0 else low, high)


def _quality_axis(ax, points: list[tuple[float, float]], drawn: list[tuple[float, float]], with_accuracy: bool, metric: str) -> float:
    """The y axis: accuracy up to 1, or 1 - cosine on an inverted log axis; returns its span as drawn."""
    if with_accuracy:
        low = min(y for _, y in points)
        ax.set(ylabel=metric, ylim=(max(0.0, low - max(0.02, 0.1 * (1 - low))), 1.005))  # accuracy stops at 1
        return ax.get_ylim()[1] - ax.get_ylim()[0]
    set_scale(ax, "y", True)
    ax.set_ylim(max(y for _, y in drawn) * 3, AGREEMENT_FLOOR / 3)  # inverted: closer to PyTorch is higher
    ax.set_ylabel(f"1 - cosine similarity with PyTorch fp32\n(log, inverted: higher is closer; 0 drawn at {AGREEMENT_FLOOR:g})")
    return abs(float(np.diff(np.log10(ax.get_ylim()))[0]))


def _accuracy_axes(ax, chosen: list[Result], batch: int, with_accuracy: bool, metric: str, steps: list[Result] = ()) -> dict[str, object]:
    """One batch size's points and Pareto front, and the precision search's steps as a path ending at the
    recipe it chose (``report.recipes``); returns the legend's handles by label."""
    from matplotlib.transforms import ScaledTranslation

    from framework.report.recipes import draw_search_path

    points = [(r.latency.median_ms, _quality(r, with_accuracy)) for r in chosen]
    front = pareto_front(points)
    drawn = points if with_accuracy else [(x, max(1 - y, AGREEMENT_FLOOR)) for x, y in points]

    def as_drawn(r: Result) -> float | None:
        y = _quality(r, with_accuracy) if r.agreement or with_accuracy and r.accuracy else None
        return y if with_accuracy or y is None else max(1 - y, AGREEMENT_FLOOR)

    paths = [p for r in chosen if (r.recipe_search or {}).get("chosen")
             for p in draw_search_path(ax, [s for s in steps if s.experiment == r.experiment], r, as_drawn)]  # fmt: skip
    log_x = wants_log(x for x, _ in drawn + paths)
    span_y = _quality_axis(ax, points + (paths if with_accuracy else []), drawn + paths, with_accuracy, metric)
    offsets = tie_offsets(drawn, log_x=log_x, log_y=not with_accuracy, span_y=span_y)
    handles = {}
    for i, (result, (x, y)) in enumerate(zip(chosen, drawn)):
        on_front = i in front
        nudge = ax.transData + ScaledTranslation(offsets[i] / 72, 0, ax.figure.dpi_scale_trans)
        handles[series_label(result)] = ax.scatter(
            x, y, s=90 if on_front else 55, color=result_color(result), edgecolor="black" if on_front else "white", linewidth=0.8,
            marker=marker(result.experiment.precision), zorder=3, transform=nudge,
        )  # fmt: skip
    ax.plot(*zip(*[drawn[i] for i in front]), color="black", lw=1, ls="--")
    set_scale(ax, "x", log_x)
    ax.set(xlabel=scaled_label("median latency (ms, host clock)", log_x), title=f"batch size {batch}")
    limits = latency_limits([x for x, _ in drawn + paths], log_x)
    ax.set_xlim(*limits)  # autoscale misses points drawn through a nudged transform
    for i in front:  # labels of points in the right third point left, so they stay inside the axes
        x, y = drawn[i]
        right = (np.log10(x / limits[0]) / np.log10(limits[1] / limits[0]) if log_x else (x - limits[0]) / (limits[1] - limits[0])) > 0.66
        ax.annotate(series_label(chosen[i]), (x, y), textcoords="offset points", xytext=(offsets[i] + (-7 if right else 7), 5),
                    ha="right" if right else "left", fontsize=8)  # fmt: skip
    ax.grid(alpha=0.3, which="both" if log_x else "major")
    if paths:
        handles["precision search: its steps in order, ending at the chosen recipe"] = pyplot().Line2D([], [], color="grey", lw=0.9, marker=".")
    return handles


TAIL = ((50.0, "median", 1.0), (99.0, "p99", 0.65), (99.9, "p99.9", 0.35))  # percentile, name, opacity


def _tail_bars(ax, chosen: list[Result], batch: int) -> None:
    """Per experiment: median, p99 and p99.9 of its headline samples, each only where n supports it."""
    from matplotlib.colors import to_rgb

    width, heights = 0.8 / len(TAIL), []
    for index, (p, _, alpha) in enumerate(TAIL):
        offset = (index - (len(TAIL) - 1) / 2) * width
        for x, result in enumerate(chosen):
            values = result.headline_samples_ms()
            if p != 50.0 and len(values) < min_samples_for_percentile(p):
                ax.text(x + offset, 0.02, "n/a", ha="center", va="bottom", fontsize=7, rotation=90, transform=ax.get_xaxis_transform())
                continue
            height = float(np.percentile(values, p))
            heights.append(height)
            ax.bar(x + offset, height, width=width, color=(*to_rgb(result_color(result)), alpha), edgecolor="black", linewidth=0.6)
    log = wants_log(heights)  # a tail 20x its median is worth seeing on a log axis too
    labels = [f"{series_label(r)}\nn={len(r.headline_samples_ms()):,}" for r in chosen]
    ax.set_xticks(np.arange(len(chosen)), labels, rotation=20, ha="right", fontsize=8)
    ax.set_xlim(-0.5, len(chosen) - 0.5)
    set_scale(ax, "y", log)
    ax.set(ylabel=scaled_label("latency (ms)", log), title=f"batch size {batch}")
    ax.grid(alpha=0.3, axis="y", which="both" if log else "major")
    key = [pyplot().Rectangle((0, 0), 1, 1, facecolor="grey", alpha=alpha, edgecolor="black", linewidth=0.5) for _, _, alpha in TAIL]
    ax.legend(key, [name for _, name, _ in TAIL], fontsize=8)


def draw_tail_latency(results: list[Result], path: Path, title: str, options) -> bool:
    """Median, p99 and p99.9 side by side: how far the slow iterations stray. A percentile is drawn only where
    the sample supports it (``measure.stats.min_samples_for_percentile``: 459 for p99, 4603 for p99.9); the
    figure only when some experiment has the samples for p99.9."""
    valid, title = valid_only(results, title)
    valid = [r for r in valid if r.headline_samples_ms()]
    if not any(len(r.headline_samples_ms()) >= min_samples_for_percentile(99.9) for r in valid):
        return False
    batches = batch_sizes(valid)
    fig, axes = figure(len(batches), 1, (max(8, 1.6 * len(valid) / len(batches) + 4), 4.2 * len(batches) + 0.6))
    for ax, batch in zip(axes[:, 0], batches):
        _tail_bars(ax, of_batch(valid, batch), batch)
    suptitle(fig, f"{title}: tail latency, median / p99 / p99.9 (device time for GPU engines, host clock otherwise; "
                  f"n/a: too few samples)")  # fmt: skip
    save_figure(fig, path)
    return True
