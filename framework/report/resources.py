"""Resources over time, per engine: the file names users of the original scripts know.

One figure per resource, one row per batch size, one line per engine and precision, from each result's
timeline (``Result.timeline_csv``, saved as ``resources.csv``; time 0 is the start of the timed loop,
negative times are the warm-up). A figure is drawn only when some timeline has its column: the GPU ones only
when NVML sampled something.

Memory is drawn as the engine's own share: the timeline minus what the worker held before the engine loaded
(``Resources.rss_before_load_mb``; on the GPU, ``Resources.cuda_context_mb``, the CUDA context), since the
~400 MB of an idle worker with torch imported would otherwise dwarf a small engine, and on a range padded
to at least 10% of the values (a 1 MB span makes noise look like a leak). Results saved without the
before-load figure are drawn whole, and the axis says so.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

from framework.report.style import batch_sizes, figure, line_style, of_batch, result_color, save_figure, series_label, suptitle
from framework.results.record import Resources, Result

TIME = "t_s"
MIN_PAD_MB = 5.0  # a memory axis reaches at least this far beyond its values
Before = Callable[[Resources], "float | None"]  # what the worker held before the engine loaded (MB)


def _number(text: str | None) -> float:
    try:
        return float(text) if text not in ("", None) else math.nan
    except ValueError:
        return math.nan


@lru_cache(maxsize=512)
def parse_timeline(text: str) -> dict[str, tuple[float, ...]]:
    """``resources.csv`` as columns of numbers (NaN where a sample is missing or not a number)."""
    rows = list(csv.DictReader(io.StringIO(text)))
    return {key: tuple(_number(r.get(key)) for r in rows) for key in (rows[0] if rows else {})}


def timeline(result: Result) -> dict[str, tuple[float, ...]]:
    return parse_timeline(result.timeline_csv) if result.timeline_csv else {}


def resource_drawer(column: str, label: str, before: Before | None = None, share_label: str = ""):
    """The draw function of the figure of one timeline column (``figures.FIGURES`` names the file); with
    ``before``, the column less that before-load figure, named ``share_label``."""

    def draw(results: list[Result], path: Path, title: str, options) -> bool:
        return draw_resource(results, path, title, column, label, before, share_label)

    draw.__name__ = f"draw_{column}"
    return draw


def before_load(result: Result, before: Before | None) -> float | None:
    value = before(result.resources) if before is not None and result.resources is not None else None
    return value if value is not None and math.isfinite(value) else None


def share_limits(values: list[float], share: bool) -> tuple[float, float] | None:
    """A memory axis' range: the values padded by 10% of their size, at least ``MIN_PAD_MB``; a share starts at 0."""
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return None
    low, high = min(finite), max(finite)
    pad = max(0.1 * max(abs(low), abs(high)), MIN_PAD_MB)
    return (min(0.0, low - pad) if share and low < 0 else 0.0 if share else low - pad), high + pad


def draw_resource(results: list[Result], path: Path, title: str, column: str, label: str, before: Before | None = None,
                  share_label: str = "") -> bool:  # fmt: skip
    chosen = [r for r in results if column in timeline(r) and TIME in timeline(r)]
    if not chosen:
        return False
    share = before is not None and all(before_load(r, before) is not None for r in chosen)
    batches = batch_sizes(chosen)
    fig, axes = figure(len(batches), 1, (12, max(4.5, 3.4 * len(batches) + 0.6)))
    for ax, batch in zip(axes[:, 0], batches):
        values = []
        for result in of_batch(chosen, batch):
            columns, e = timeline(result), result.experiment
            minus = before_load(result, before) if share else 0.0
            ys = [v - minus for v in columns[column]]
            values += ys
            name = series_label(result) + (f" (less {minus:,.0f} MB)" if share else "")
            ax.plot(columns[TIME], ys, ls=line_style(e.precision), lw=1.5, color=result_color(result), label=name)
        limits = share_limits(values, share) if before is not None else None
        if limits:
            ax.set_ylim(*limits)
        ax.axvline(0, color="grey", lw=0.8, ls=":")
        ax.set(xlabel="time since the timed loop began (s); left of the dotted line: warm-up", ylabel=share_label if share else label,
               title=f"batch size {batch}")  # fmt: skip
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    what = f"{share_label}: the engine's own share, less what its worker held before loading it" if share else label
    suptitle(fig, f"{title}: {what}, during each experiment (own process each)")
    save_figure(fig, path)
    return True
