"""Resources over time, per engine: the file names users of the original scripts know.

One figure per resource, one row per batch size, one line per engine and precision, from each result's
timeline (``Result.timeline_csv``, saved as ``resources.csv``; time 0 is the start of the timed loop,
negative times are the warm-up). A figure is drawn only when some timeline has its column: the GPU ones only
when NVML sampled something.
"""

from __future__ import annotations

import csv
import io
import math
from functools import lru_cache
from pathlib import Path

from framework.report.style import batch_sizes, engine_color, line_style, of_batch, pyplot, save_figure, series_label, suptitle
from framework.results.record import Result

TIME = "t_s"


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


def resource_drawer(column: str, label: str):
    """The draw function of the figure of one timeline column (``figures.FIGURES`` names the file)."""

    def draw(results: list[Result], path: Path, title: str, options) -> bool:
        return draw_resource(results, path, title, column, label)

    draw.__name__ = f"draw_{column}"
    return draw


def draw_resource(results: list[Result], path: Path, title: str, column: str, label: str) -> bool:
    chosen = [r for r in results if column in timeline(r) and TIME in timeline(r)]
    if not chosen:
        return False
    plt = pyplot()
    batches = batch_sizes(chosen)
    fig, axes = plt.subplots(len(batches), 1, figsize=(12, max(4.5, 3.4 * len(batches))), squeeze=False)
    for ax, batch in zip(axes[:, 0], batches):
        for result in of_batch(chosen, batch):
            columns = timeline(result)
            e = result.experiment
            ax.plot(columns[TIME], columns[column], ls=line_style(e.precision), lw=1.2, color=engine_color(e.engine),
                    label=series_label(result))  # fmt: skip
        ax.axvline(0, color="grey", lw=0.8, ls=":")
        ax.set(xlabel="time since the timed loop began (s); left of the dotted line: warm-up", ylabel=label, title=f"batch size {batch}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="upper right")
    suptitle(fig, f"{title}: {label} during each experiment (own process each)")
    save_figure(fig, path)
    return True
