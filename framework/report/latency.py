"""Every timed iteration, per device: ``cpu_time_measurements.jpg`` (host clock) and
``cuda_time_measurements.jpg`` (device time, CUDA events).

One row per batch size; on the left every timed iteration in order (drift and hiccups show), on the right
the distribution per engine and precision. Outliers are replaced by NaN by default: points beyond Tukey's
fences (1.5 IQR outside the quartiles) that are also more than 5% from the median
(``measure.stats.without_outliers``); the title says how many were hidden. Warm-up is never in the samples.
A row's latency axes are logarithmic when its engines' medians differ by more than 20x (``style.wants_log``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from framework.measure.stats import without_outliers
from framework.report.style import (
    batch_sizes,
    figure,
    hatch,
    line_style,
    of_batch,
    result_color,
    save_figure,
    scaled_label,
    series_label,
    set_scale,
    suptitle,
    wants_log,
)  # fmt: skip
from framework.results.record import Result


@dataclass(frozen=True)
class Series:
    """One experiment's samples as drawn: NaN where an outlier was hidden."""

    label: str
    color: str
    precision: str
    values: np.ndarray
    hidden: int


def draw_cpu_latencies(results: list[Result], path: Path, title: str, options) -> bool:
    return draw_latencies([r for r in results if r.device == "cpu"], path, f"{title}, CPU engines", options.keep_outliers)


def draw_cuda_latencies(results: list[Result], path: Path, title: str, options) -> bool:
    return draw_latencies([r for r in results if r.device == "cuda"], path, f"{title}, CUDA engines", options.keep_outliers)


def series_of(result: Result, keep_outliers: bool) -> Series:
    """GPU engines: device time (latency-model); CPU engines: the host clock (``Result.headline_samples_ms``)."""
    values = np.asarray(result.headline_samples_ms(), dtype=np.float64)
    hidden = 0
    if not keep_outliers:
        cleaned = without_outliers(values)
        hidden = int(np.isnan(cleaned).sum() - np.isnan(values).sum())
        values = cleaned
    e = result.experiment
    return Series(series_label(result), result_color(result), e.precision, values, hidden)


def draw_latencies(results: list[Result], path: Path, title: str, keep_outliers: bool) -> bool:
    chosen = [r for r in results if r.samples is not None and r.headline_samples_ms()]
    if not chosen:
        return False
    batches = batch_sizes(chosen)
    fig, axes = figure(len(batches), 2, (13, 3.8 * len(batches) + 0.6), gridspec_kw={"width_ratios": [3, 2]})
    unit = "device time, CUDA events" if any(r.latency_model for r in chosen) else "host clock"
    hidden = 0
    for (series_ax, dist_ax), batch in zip(axes, batches):
        drawn = [series_of(r, keep_outliers) for r in of_batch(chosen, batch)]
        log = wants_log(float(np.nanmedian(s.values)) for s in drawn if np.isfinite(s.values).any())
        _iterations(series_ax, drawn, batch, scaled_label(f"latency (ms, {unit})", log), log)
        _distribution(dist_ax, drawn, batch, keep_outliers, log)
        hidden += sum(s.hidden for s in drawn)
    handles = {line.get_label(): line for ax in axes[:, 0] for line in ax.get_lines()}  # one key for every row, below them
    fig.legend(handles.values(), handles.keys(), loc="outside lower center", ncols=min(4, len(handles)), fontsize=8, markerscale=3)
    rule = "all points shown" if keep_outliers else f"{hidden} outliers hidden: beyond 1.5 IQR and 5% from the median"
    suptitle(fig, f"{title} ({rule}); warm-up excluded")
    save_figure(fig, path)
    return True


def _iterations(ax, drawn: list[Series], batch: int, ylabel: str, log: bool) -> None:
    for s in drawn:
        ax.plot(np.arange(s.values.size), s.values, marker=".", ls=line_style(s.precision), ms=3, lw=0.8, color=s.color,
                label=s.label, alpha=0.85)  # fmt: skip
    set_scale(ax, "y", log)
    ax.set(xlabel="timed iteration", ylabel=ylabel, title=f"batch size {batch}: every iteration")
    ax.grid(alpha=0.3, which="both" if log else "major")


def _distribution(ax, drawn: list[Series], batch: int, keep_outliers: bool, log: bool) -> None:
    data = [s.values[~np.isnan(s.values)] for s in drawn]
    box = ax.boxplot(data, orientation="horizontal", patch_artist=True, showfliers=keep_outliers)
    for patch, s in zip(box["boxes"], drawn):
        patch.set(facecolor=s.color, hatch=hatch(s.precision))
    for median in box["medians"]:
        median.set(color="black", lw=1.5)
    ax.set_yticks(range(1, len(drawn) + 1), [s.label for s in drawn], fontsize=8)
    set_scale(ax, "x", log)
    ax.set(xlabel=scaled_label("latency (ms)", log), title=f"batch size {batch}: distribution (median line)")
    ax.grid(alpha=0.3, axis="x", which="both" if log else "major")
