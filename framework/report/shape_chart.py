"""Latency against the dynamic dim: one line per engine and precision (its bucket medians), and the distribution's
shares as bars beneath, on the same x axis, so a reader sees at once where the requests are and what each engine
costs there. Static engines are not drawn: they are timed in alternation with the dynamic engine, at another time
than the bucket medians, so only their paired ratio (the report's table) compares them fairly."""

from __future__ import annotations

import math
from pathlib import Path

from framework.report.style import figure, legend_beside, save_figure, scaled_label, series_color, set_scale, suptitle, wants_log
from framework.results.shape_mix_record import ShapeMixResult


def value_text(value) -> str:
    return "x".join(str(d) for d in value)


def draw_shape_chart(results: list[ShapeMixResult], path: Path, model: str) -> Path | None:
    """Write the figure to ``path`` (JPEG); None when no result has bucket latencies."""
    measured = [r for r in results if r.status == "ok" and r.buckets]
    if not measured:
        return None
    fig, axes = figure(2, 1, (9.0, 6.2), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    top, bottom = axes[0][0], axes[1][0]
    values = sorted({b.value for r in measured for b in r.buckets}, key=lambda v: (math.prod(v), v))
    xs = {v: math.prod(v) for v in values}
    every = []
    for result in measured:
        color = series_color(result.engine, result.precision)
        points = [(xs[b.value], b.median_ms) for b in result.buckets]
        every += [y for _, y in points]
        top.plot(*zip(*points), marker="o", color=color, label=f"{result.label} bs{result.batch_size}")
    set_scale(top, "y", wants_log(every))
    top.set_ylabel(scaled_label("median latency per bucket (ms, host clock)", wants_log(every)))
    top.grid(True, which="both", alpha=0.3)
    legend_beside(top)
    weights = {b.value: b.weight for b in measured[0].buckets}
    widths = [xs[v] * 0.25 for v in values]
    bottom.bar([xs[v] for v in values], [100 * weights.get(v, 0) for v in values], width=widths, color="#999999")
    bottom.set_ylabel("requests (%)")
    bottom.set_xscale("log", base=2)
    bottom.set_xticks([xs[v] for v in values], [value_text(v) for v in values], rotation=45 if len(values) > 8 else 0)
    bottom.minorticks_off()
    bottom.set_xlabel(" x ".join(measured[0].dims) + (" (x axis: their product)" if len(measured[0].dims) > 1 else ""))
    suptitle(fig, f"{model}: latency against {' x '.join(measured[0].dims)}, and the served distribution")
    save_figure(fig, path)
    return path
