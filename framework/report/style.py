"""How every figure looks: one colour per engine, the precision's line style, marker and hatch (from
``framework.precisions``, the one table of precision facts), series labels, and the one way a figure is
saved (JPEG, written whole or not at all). The bottom of ``framework.report``: it imports nothing from it."""

from __future__ import annotations

import io
import textwrap
from pathlib import Path

from framework.files import write_atomic
from framework.precisions import PRECISIONS, precision
from framework.results.record import Result

# One colour per engine, the same in every figure.
ENGINE_COLORS = {
    "pytorch-cpu": "#1f77b4",
    "onnxruntime-cpu": "#ff7f0e",
    "pytorch-cuda": "#2ca02c",
    "onnxruntime-cuda": "#d62728",
    "onnxruntime-tensorrt": "#9467bd",
    "tensorrt": "#8c564b",
}
FALLBACK_COLORS = ("#e377c2", "#7f7f7f", "#bcbd22", "#17becf")  # engines not listed above, by a stable hash
MARKER_NAMES = {"o": "circle", "s": "square", "D": "diamond", "^": "triangle"}
DPI = 100


def engine_color(engine: str) -> str:
    return ENGINE_COLORS.get(engine) or FALLBACK_COLORS[sum(map(ord, engine)) % len(FALLBACK_COLORS)]


def line_style(name: str) -> str:
    """Precisions of one engine share its colour and differ in line style ..."""
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
    """The order series are drawn and listed in: engine, then precision."""
    return (result.experiment.engine, result.experiment.precision)


def batch_sizes(results: list[Result]) -> list[int]:
    """The batch sizes measured, in numeric order."""
    return sorted({int(r.experiment.batch_size) for r in results})


def of_batch(results: list[Result], batch: int) -> list[Result]:
    """The experiments of one batch size, in series order."""
    return sorted((r for r in results if int(r.experiment.batch_size) == batch), key=series_key)


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
    """JPEG, written whole or not at all (``files.write_atomic``), then the figure closed."""
    plt = pyplot()
    try:
        fig.tight_layout()
        buffer = io.BytesIO()
        fig.savefig(buffer, dpi=DPI, format="jpeg")
    finally:
        plt.close(fig)
    write_atomic(Path(path), buffer.getvalue())
