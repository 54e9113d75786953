"""``speedup.jpg``: what each configuration buys over the baseline, the answer users come for.

Per batch size, one horizontal bar per valid configuration (per baseline, the fastest on top) from 1x to its speedup (baseline median / its
median, ``results.speedup``), with the ratio's 99% interval as error bars: right of the 1x line is faster
than the baseline, left is slower. The baseline is ``--baseline ENGINE:PRECISION`` or PyTorch fp32 eager on
the row's own device kind; it may be a configuration ``--tune`` tried (``FigureOptions.candidates``), then
it has no bar of its own and the 1x line stands for it. The axis goes logarithmic when the speedups differ
by more than 20x (``style.wants_log``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from framework.report.comparisons import valid_only
from framework.report.style import (
    batch_sizes,
    figure,
    of_batch,
    result_color,
    save_figure,
    scaled_label,
    series_label,
    set_scale,
    suptitle,
    wants_log,
)  # fmt: skip
from framework.results.record import Result, options_text
from framework.results.speedup import Speedup, speedups

BAR_HEIGHT_IN = 0.42  # figure height per bar


def is_own_baseline(result: Result, speedup: Speedup) -> bool:
    """The row that is the baseline itself (``speedup.speedup`` gives it exactly 1, no interval): drawn, named so."""
    return speedup.ratio == speedup.ci_low == speedup.ci_high == 1.0


def bar_label(result: Result, speedup: Speedup, mixed: bool) -> str:
    """The row's series, its non-default options (a tuned configuration), and its baseline where rows differ in it."""
    label = series_label(result)
    if result.configuration:
        label += f" ({options_text(result.configuration, sort=True)})"
    if is_own_baseline(result, speedup):
        return label + " = baseline"
    return label + (f"\nvs {speedup.baseline}" if mixed else "")


def draw_speedup(results: list[Result], path: Path, title: str, options) -> bool:
    """Drawn only when some row is measured against a baseline other than itself."""
    valid, title = valid_only(results, title)
    found = speedups(valid, list(options.candidates), options.baseline)
    chosen = [r for r in valid if id(r) in found]
    if not any(not is_own_baseline(r, found[id(r)]) for r in chosen):
        return False
    batches = batch_sizes(chosen)
    counts = [len(of_batch(chosen, b)) for b in batches]
    fig, axes = figure(len(batches), 1, (11, sum(BAR_HEIGHT_IN * n + 1.3 for n in counts) + 0.8), height_ratios=[n + 2 for n in counts])
    for ax, batch in zip(axes[:, 0], batches):  # per baseline, the fastest on top
        _speedup_axes(ax, sorted(of_batch(chosen, batch), key=lambda r: (found[id(r)].baseline, -found[id(r)].ratio)), found, batch)
    names = sorted({s.baseline for s in found.values()})
    suptitle(fig, f"{title}: speedup over {' / '.join(names)} (ratio of medians, 99% interval; right of 1x: faster; "
                  f"device time for GPU engines, host clock otherwise)")  # fmt: skip
    save_figure(fig, path)
    return True


def _speedup_axes(ax, chosen: list[Result], found: dict[int, Speedup], batch: int) -> None:
    rows = [found[id(r)] for r in chosen]
    y = np.arange(len(rows))[::-1]  # the first series on top
    ratios = np.array([s.ratio for s in rows])
    errors = [np.clip(ratios - [s.ci_low for s in rows], 0, None), np.clip([s.ci_high for s in rows] - ratios, 0, None)]
    ax.barh(y, ratios - 1, left=1, height=0.6, color=[result_color(r) for r in chosen], edgecolor="black", linewidth=0.5)
    ax.errorbar(ratios, y, xerr=errors, fmt="none", ecolor="black", capsize=3, lw=1)
    for yi, s in zip(y, rows):
        ax.annotate(f"{s.ratio:.2f}x [{s.ci_low:.2f}, {s.ci_high:.2f}]", (max(s.ci_high, 1.0), yi), xytext=(5, 0),
                    textcoords="offset points", va="center", fontsize=8)  # fmt: skip
    ax.axvline(1.0, color="black", lw=1.2)
    mixed = len({s.baseline for s in rows}) > 1
    ax.set_yticks(y, [bar_label(r, s, mixed) for r, s in zip(chosen, rows)], fontsize=8)
    log = wants_log([*ratios, *[s.ci_low for s in rows], 1.0])
    baseline = "the baseline" if mixed else rows[0].baseline
    set_scale(ax, "x", log, suffix="x")
    ax.set(title=f"batch size {batch}", xlabel=scaled_label(f"speedup over {baseline} (1x: as fast)", log))
    low, high = min(0.8, *(s.ci_low for s in rows)), max(1.25, *(s.ci_high for s in rows))
    ax.set_xlim(low / 1.15 if log else max(0.0, low - 0.1 * (high - low)), high * 2.2 if log else high + 0.35 * (high - low))
    ax.set_ylim(-0.7, len(rows) - 0.3)
    ax.grid(alpha=0.3, axis="x", which="both" if log else "major")
