"""Engines side by side: throughput against batch size, latency bars, tail latency, and accuracy against latency.

Only valid results are drawn (an invalid one is never shown as a winner); the titles say how many were left
out. GPU engines are shown with latency-all (host clock, copies included) next to latency-model (device
time) where the chart has room for both.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from framework.measure.stats import min_samples_for_percentile
from framework.report.style import (
    batch_sizes,
    engine_color,
    legend_beside,
    line_style,
    marker,
    marker_legend,
    of_batch,
    pyplot,
    save_figure,
    series_key,
    series_label,
    suptitle,
)  # fmt: skip
from framework.results.record import LatencyStats, Result


def valid_only(results: list[Result], title: str) -> tuple[list[Result], str]:
    """The valid results, and the title saying how many others were left out."""
    valid = [r for r in results if r.is_valid and r.latency is not None]
    left_out = len(results) - len(valid)
    return valid, title + (f" ({left_out} invalid results left out)" if left_out else "")


def _series(results: list[Result]) -> dict[tuple[str, str], list[Result]]:
    series: dict[tuple[str, str], list[Result]] = {}
    for result in sorted(results, key=lambda r: (*series_key(r), r.experiment.batch_size)):
        series.setdefault(series_key(result), []).append(result)
    return series


def draw_throughput_vs_batch(results: list[Result], path: Path, title: str, options) -> bool:
    valid, title = valid_only(results, title)
    if not valid:
        return False
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(12, 5.5))
    for (engine, precision), points in _series(valid).items():
        style = dict(color=engine_color(engine), ls=line_style(precision))
        ax.plot([r.experiment.batch_size for r in points], [r.latency.throughput_items_per_s for r in points], marker="o",
                label=f"{engine} {precision}", **style)  # fmt: skip
        model = [(r.experiment.batch_size, r.latency_model.throughput_items_per_s) for r in points if r.latency_model]
        if model:
            ax.plot(*zip(*model), marker="^", alpha=0.45, label=f"{engine} {precision} (model only, device time)", **style)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    measured = batch_sizes(valid)
    ax.set_xticks(measured, [str(b) for b in measured])  # the batch sizes measured, not powers of two
    ax.tick_params(axis="x", which="minor", bottom=False, labelbottom=False)
    ax.set(xlabel="batch size", ylabel="throughput (items/s, wall time of the timed loop)", title=f"{title}: throughput against batch size")
    ax.grid(alpha=0.3, which="both")
    legend_beside(ax)
    save_figure(fig, path)
    return True


def _median_bars(ax, chosen: list[Result], stats: list[LatencyStats | None], offset: float, width: float, **style) -> None:
    """Median bars at ``offset`` from each tick with their 99% confidence interval (none where n is too small)."""
    heights = [s.median_ms if s else np.nan for s in stats]
    low = [s.median_ms - s.median_ci99_low_ms if s and s.median_ci99_low_ms is not None else 0 for s in stats]
    high = [s.median_ci99_high_ms - s.median_ms if s and s.median_ci99_high_ms is not None else 0 for s in stats]
    ax.bar(np.arange(len(chosen)) + offset, heights, width=width, color=[engine_color(r.experiment.engine) for r in chosen],
           edgecolor="black", linewidth=0.5, yerr=[low, high], capsize=3, **style)  # fmt: skip


def draw_latency_bars(results: list[Result], path: Path, title: str, options) -> bool:
    valid, title = valid_only(results, title)
    if not valid:
        return False
    plt = pyplot()
    batches = batch_sizes(valid)
    fig, axes = plt.subplots(len(batches), 1, figsize=(max(8, 1.3 * len(valid) / len(batches) + 4), 3.8 * len(batches)), squeeze=False)
    for ax, batch in zip(axes[:, 0], batches):
        chosen = of_batch(valid, batch)
        kinds = [("latency", "", "latency-all (host clock)")]
        if any(r.latency_model for r in chosen):
            kinds.append(("latency_model", "//", "latency-model (device time)"))
        width = 0.8 / len(kinds)
        for index, (field, kind_hatch, name) in enumerate(kinds):
            offset = (index - (len(kinds) - 1) / 2) * width
            _median_bars(ax, chosen, [getattr(r, field) for r in chosen], offset, width, hatch=kind_hatch, label=name)
        ax.set_xticks(np.arange(len(chosen)), [series_label(r) for r in chosen], rotation=20, ha="right", fontsize=8)
        ax.set(ylabel="median latency (ms), 99% CI", title=f"batch size {batch}")
        ax.grid(alpha=0.3, axis="y")
        ax.legend(fontsize=8)
    suptitle(fig, f"{title}: median latency per engine (plain: latency-all; hatched: latency-model, GPU engines)")
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

    Points are named in one legend (colour: engine, marker: precision); only the Pareto front's points carry a
    label beside them, since many engines often tie on accuracy and their labels would overlap. Agreement is
    drawn as 1 - cosine on a log axis, better upwards: cosines like 0.99999 and 0.9999999 are otherwise one line."""
    valid, title = valid_only(results, title)
    with_accuracy = bool(valid) and all(r.accuracy for r in valid)
    valid = [r for r in valid if _quality(r, with_accuracy) is not None]
    if not valid:
        return False
    plt = pyplot()
    metric = "top-1 accuracy on the dataset" if with_accuracy else "agreement with PyTorch fp32"
    batches = batch_sizes(valid)
    fig, axes = plt.subplots(1, len(batches), figsize=(5.5 * len(batches) + 2.5, 5.2), squeeze=False)
    legend: dict[str, object] = {}
    for ax, batch in zip(axes[0], batches):
        legend.update(_accuracy_axes(ax, sorted(of_batch(valid, batch), key=series_label), batch, with_accuracy, metric))
    handles = [*legend.values(), plt.Line2D([], [], color="black", lw=1, ls="--")]
    legend_beside(axes[0][-1], handles, [*legend, "Pareto front (faster and as accurate)"])
    suptitle(fig, f"{title}: {metric} against latency ({marker_legend()})")
    save_figure(fig, path)
    return True


def _accuracy_axes(ax, chosen: list[Result], batch: int, with_accuracy: bool, metric: str) -> dict[str, object]:
    """One batch size's points and Pareto front; returns the legend's handles by label."""
    points = [(r.latency.median_ms, _quality(r, with_accuracy)) for r in chosen]
    front = pareto_front(points)
    drawn = points if with_accuracy else [(x, max(1 - y, AGREEMENT_FLOOR)) for x, y in points]
    handles = {}
    for i, (result, (x, y)) in enumerate(zip(chosen, drawn)):
        on_front = i in front
        handles[series_label(result)] = ax.scatter(
            x, y, s=90 if on_front else 50, color=engine_color(result.experiment.engine), edgecolor="black" if on_front else "none",
            marker=marker(result.experiment.precision), zorder=3,
        )  # fmt: skip
        if on_front:
            ax.annotate(series_label(result), (x, y), textcoords="offset points", xytext=(7, 5), fontsize=8)
    ax.plot(*zip(*[drawn[i] for i in front]), color="black", lw=1, ls="--")
    ax.set(xlabel="median latency (ms, host clock)", title=f"batch size {batch}")
    if with_accuracy:
        low = min(y for _, y in points)
        ax.set(ylabel=metric, ylim=(max(0.0, low - max(0.02, 0.1 * (1 - low))), 1.005))  # accuracy stops at 1
    else:
        ax.set_yscale("log")
        ax.set_ylim(max(y for _, y in drawn) * 3, AGREEMENT_FLOOR / 3)  # inverted: closer to PyTorch is higher
        ax.set_ylabel(f"1 - cosine similarity with PyTorch fp32\n(log, inverted: higher is closer; 0 drawn at {AGREEMENT_FLOOR:g})")
    ax.grid(alpha=0.3)
    return handles


TAIL = ((50.0, "median", 1.0), (99.0, "p99", 0.65), (99.9, "p99.9", 0.35))  # percentile, name, opacity


def _tail_bars(ax, chosen: list[Result], batch: int) -> None:
    """Per experiment: median, p99 and p99.9 of its headline samples, each only where n supports it."""
    width = 0.8 / len(TAIL)
    for index, (p, _, alpha) in enumerate(TAIL):
        offset = (index - (len(TAIL) - 1) / 2) * width
        for x, result in enumerate(chosen):
            values = result.headline_samples_ms()
            if p != 50.0 and len(values) < min_samples_for_percentile(p):
                ax.text(x + offset, 0, "n/a", ha="center", va="bottom", fontsize=7, rotation=90, clip_on=True)
                continue
            ax.bar(x + offset, float(np.percentile(values, p)), width=width, color=engine_color(result.experiment.engine),
                   alpha=alpha, edgecolor="black", linewidth=0.5)  # fmt: skip
    labels = [f"{series_label(r)}\nn={len(r.headline_samples_ms()):,}" for r in chosen]
    ax.set_xticks(np.arange(len(chosen)), labels, rotation=20, ha="right", fontsize=8)
    ax.set_xlim(-0.5, len(chosen) - 0.5)
    ax.set(ylabel="latency (ms)", title=f"batch size {batch}")
    ax.grid(alpha=0.3, axis="y")
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
    plt = pyplot()
    batches = batch_sizes(valid)
    fig, axes = plt.subplots(len(batches), 1, figsize=(max(8, 1.6 * len(valid) / len(batches) + 4), 4.2 * len(batches)), squeeze=False)
    for ax, batch in zip(axes[:, 0], batches):
        _tail_bars(ax, of_batch(valid, batch), batch)
    suptitle(fig, f"{title}: tail latency, median / p99 / p99.9 (device time for GPU engines, host clock otherwise; "
                  f"n/a: too few samples)")  # fmt: skip
    save_figure(fig, path)
    return True
