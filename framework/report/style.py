"""How every figure looks: one hue per engine and a shade of it per precision (fp32 darkest, int8 lightest),
the precision's line style, marker and hatch (from ``framework.precisions``, the one table of precision
facts), series labels, when a latency axis goes logarithmic, and the one way a figure is laid out and saved
(constrained layout, JPEG, written whole or not at all). The bottom of ``framework.report``: it imports
nothing from it."""

from __future__ import annotations

import io
import math
import textwrap
from pathlib import Path

from framework.files import write_atomic
from framework.precisions import PRECISIONS, precision
from framework.results.record import Result

# One hue per engine, the same in every figure (GPU runs show tensorrt beside onnxruntime-cuda and
# onnxruntime-cpu: teal keeps it apart from their red and orange, where brown's light shades were not).
ENGINE_COLORS = {
    "pytorch-cpu": "#1f77b4",
    "onnxruntime-cpu": "#ff7f0e",
    "pytorch-cuda": "#2ca02c",
    "onnxruntime-cuda": "#d62728",
    "onnxruntime-tensorrt": "#9467bd",
    "tensorrt": "#17becf",
}
FALLBACK_COLORS = ("#e377c2", "#7f7f7f", "#bcbd22", "#8c564b")  # engines not listed above, by a stable hash
# A precision's shade of its engine's hue: below 0 mixes in black (darker), above 0 white (lighter).
PRECISION_SHADES = {"fp32": -0.15, "fp16": 0.3, "int8": 0.58}
UNKNOWN_SHADE = 0.45
MARKER_NAMES = {"o": "circle", "s": "square", "D": "diamond", "^": "triangle"}
LOG_RATIO = 20.0  # a latency axis goes logarithmic when its largest value is more than this times its smallest
DPI = 100


def engine_color(engine: str) -> str:
    """The engine's own hue (its fp16 and int8 are lighter shades of it: ``series_color``)."""
    return ENGINE_COLORS.get(engine) or FALLBACK_COLORS[sum(map(ord, engine)) % len(FALLBACK_COLORS)]


def series_color(engine: str, precision_name: str) -> str:
    """The colour of one engine at one precision: its engine's hue, fp32 darkest, fp16 medium, int8 light.
    Three precisions of one engine in one colour could only be told apart by line style or hatching."""
    base = engine_color(engine).lstrip("#")
    rgb = [int(base[i : i + 2], 16) / 255 for i in (0, 2, 4)]
    shade = PRECISION_SHADES.get(precision_name, UNKNOWN_SHADE)
    mixed = [c * (1 + shade) if shade < 0 else c + (1 - c) * shade for c in rgb]
    return "#" + "".join(f"{round(c * 255):02x}" for c in mixed)


def result_color(result: Result) -> str:
    return series_color(result.experiment.engine, result.experiment.precision)


def wants_log(values) -> bool:
    """A latency axis is logarithmic when its values differ by more than ``LOG_RATIO`` times: on a linear one
    a GPU engine's bar next to a CPU engine's is a sliver."""
    positive = [float(v) for v in values if v is not None and math.isfinite(float(v)) and float(v) > 0]
    return bool(positive) and max(positive) > LOG_RATIO * min(positive)


def scaled_label(label: str, log: bool) -> str:
    """An axis label that says when the axis is logarithmic."""
    return f"{label}, log scale" if log else label


def plain_number(value: float, suffix: str = "") -> str:
    """A tick label a reader reads at a glance: 0.05, 2, 1,200 (not 5x10^-2)."""
    return (f"{value:,.0f}" if abs(value) >= 1e3 else f"{value:g}") + suffix


def set_scale(ax, which: str, log: bool, suffix: str = "") -> None:
    """Make the ``which`` ("x" or "y") axis logarithmic or linear. Log ticks are plain numbers, and the 2s and 5s
    between powers of ten are labelled too where the axis spans at most three decades (else a one-decade
    axis would carry a single label)."""
    from matplotlib.ticker import FuncFormatter

    axis = ax.xaxis if which == "x" else ax.yaxis
    (ax.set_xscale if which == "x" else ax.set_yscale)("log" if log else "linear")
    if log or suffix:
        axis.set_major_formatter(FuncFormatter(lambda v, _: plain_number(v, suffix)))
    if log:

        def minor(value: float, _) -> str:
            low, high = sorted(axis.get_view_interval())
            digit = round(value / 10 ** math.floor(math.log10(value) + 1e-9)) if value > 0 else 0
            return plain_number(value, suffix) if low > 0 and high / low <= 1000 and digit in (2, 5) else ""

        axis.set_minor_formatter(FuncFormatter(minor))


def line_style(name: str) -> str:
    """Precisions of one engine share its hue, differ in shade (``series_color``) and in line style ..."""
    return precision(name).line_style


def marker(name: str) -> str:
    """... in marker (scatter plots) ..."""
    return precision(name).marker


def hatch(name: str) -> str:
    """... and in hatching (box and bar plots)."""
    return precision(name).hatch


def marker_legend() -> str:
    """``circle fp32, square fp16, diamond int8``: what a scatter plot's markers mean."""
    return ", ".join(f"{MARKER_NAMES.get(p.marker, p.marker)} {name}" for name, p in PRECISIONS.items())


def series_label(result: Result, batch: bool = False) -> str:
    """How a figure names an experiment within one shape (and batch size, unless ``batch``)."""
    e = result.experiment
    return e.series + (f" bs{e.batch_size}" if batch else "")


def series_key(result: Result) -> tuple:
    """The order series are drawn and listed in: engine, then precision, then the GPU kind (``--devices``)."""
    return (result.experiment.engine, result.experiment.precision, result.experiment.device_kind or "")


def batch_sizes(results: list[Result]) -> list[int]:
    """The batch sizes measured, in numeric order."""
    return sorted({int(r.experiment.batch_size) for r in results})


def of_batch(results: list[Result], batch: int) -> list[Result]:
    """The experiments of one batch size, in series order."""
    return sorted((r for r in results if int(r.experiment.batch_size) == batch), key=series_key)


def figure(rows: int, columns: int, figsize: tuple[float, float], **kwargs):
    """``pyplot.subplots`` with constrained layout (titles, outside legends and labels all fit), axes always 2-D."""
    return pyplot().subplots(rows, columns, figsize=figsize, squeeze=False, layout="constrained", **kwargs)


def pyplot():
    """matplotlib's pyplot on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def legend_beside(ax, *args, **kwargs) -> None:
    """A legend to the right of the axes, outside them: a dozen series inside would hide the lines."""
    ax.legend(*args, fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0, **kwargs)


def suptitle(fig, text: str, fontsize: int = 11) -> None:
    """The figure's title, wrapped to its width (a narrow figure cut a long title off at both sides)."""
    width_px = fig.get_figwidth() * fig.dpi
    chars = max(40, int(width_px / (0.6 * fontsize * fig.dpi / 72)))  # about 0.6 em per character
    fig.suptitle("\n".join(textwrap.wrap(text, chars)), fontsize=fontsize)


def save_figure(fig, path: Path) -> None:
    """JPEG, written whole or not at all (``files.write_atomic``), then the figure closed; laid out tightly
    unless it was made with a layout of its own (``figure``)."""
    plt = pyplot()
    try:
        if fig.get_layout_engine() is None:
            fig.tight_layout()
        buffer = io.BytesIO()
        fig.savefig(buffer, dpi=DPI, format="jpeg")
    finally:
        plt.close(fig)
    write_atomic(Path(path), buffer.getvalue())
