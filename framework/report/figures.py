"""Every figure of a model, in one ordered registry: adding a plot is one ``Figure`` here and its draw function.

``FIGURES`` is the only place plot file names are typed; the report walks it for its captions and links.
Each figure is drawn once per example shape into ``<model>/plots/<shape>/<filename>``, from the shape's
finished (status ok) results, samples and timelines included: nothing here reads a file but the results
(``plot_model`` aside, which loads them). Each engine keeps one hue in every figure, each precision its shade
of it (``style.series_color``), and precisions differ by line style, marker or hatching too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from framework.files import safe_component
from framework.report.comparisons import draw_accuracy_vs_latency, draw_latency_bars, draw_tail_latency, draw_throughput_vs_batch
from framework.report.latency import draw_cpu_latencies, draw_cuda_latencies
from framework.report.resources import resource_drawer
from framework.report.speedup_chart import draw_speedup
from framework.results.record import Result
from framework.results.store import load_results

PLOTS_DIR = "plots"


@dataclass(frozen=True)
class FigureOptions:
    keep_outliers: bool = False  # latency plots: draw every point (by default outliers are hidden, and counted)
    baseline: tuple[str, str] | None = None  # the speedup chart's (engine, precision); None: PyTorch fp32 per device kind
    candidates: tuple = ()  # more results to find the baseline in: the configurations --tune tried (status "tuning")
    search_steps: tuple = ()  # the precision search's measured steps (status "search"): a path in accuracy_vs_latency


@dataclass(frozen=True)
class Figure:
    """One plot file per shape. ``draw(results, path, title, options)`` writes ``path`` from one shape's
    finished results and returns whether it drew something (False: nothing to show, no file written)."""

    filename: str
    caption: str
    draw: Callable[[list[Result], Path, str, FigureOptions], bool]


FIGURES: tuple[Figure, ...] = (
    Figure("cpu_time_measurements.jpg", "Latency of CPU engines (host clock)", draw_cpu_latencies),
    Figure("cuda_time_measurements.jpg", "Latency of GPU engines (device time, CUDA events)", draw_cuda_latencies),
    Figure("latency_bars.jpg", "Median latency per engine", draw_latency_bars),
    Figure("speedup.jpg", "Speedup over the baseline (ratio of medians) with its 99% interval", draw_speedup),
    Figure("tail_latency.jpg", "Tail latency: median, p99 and p99.9 where the sample supports them", draw_tail_latency),
    Figure("throughput_vs_batch.jpg", "Throughput against batch size", draw_throughput_vs_batch),
    Figure("accuracy_vs_latency.jpg", "Accuracy (or agreement) against latency, Pareto front marked", draw_accuracy_vs_latency),
    Figure("cpu_mb_measurements.jpg", "Resident memory over time: the engine's own share, above what the worker held before it loaded",
           resource_drawer("rss_mb", "resident memory (MB, process and children)", lambda res: res.rss_before_load_mb,
                           "RSS above before-load (MB)")),
    Figure("cpu_pct_util_measurements.jpg", "CPU use over time", resource_drawer("cpu_pct", "CPU use (% of one core)")),
    Figure("gpu_0_mb_measurements.jpg", "GPU memory of the process over time: the engine's own share, above the CUDA context",
           resource_drawer("process_gpu_mem_mb", "GPU 0 memory of the process (MB, NVML)", lambda res: res.cuda_context_mb,
                           "GPU 0 MB above CUDA context")),
    Figure("gpu_0_pct_util_measurements.jpg", "GPU utilisation over time", resource_drawer("gpu_util_pct", "GPU 0 utilisation (%)")),
)  # fmt: skip


def plots_folder(model_dir: Path, shape: str) -> Path:
    return Path(model_dir) / PLOTS_DIR / safe_component(shape)


def plot_link(shape: str, figure: Figure) -> str:
    """The figure's path relative to the model's folder (where report.md is)."""
    return f"{PLOTS_DIR}/{safe_component(shape)}/{figure.filename}"


def draw_shape(results: list[Result], folder: Path, title: str, options: FigureOptions) -> list[Path]:
    """Every figure of one shape's results; a figure with nothing to show removes its stale file, if any."""
    finished = [r for r in results if r.status == "ok"]
    written = []
    for figure in FIGURES:
        path = Path(folder) / figure.filename
        if finished and figure.draw(finished, path, title, options):
            written.append(path)
        else:
            path.unlink(missing_ok=True)  # drawn by an earlier run of other results: it would be linked
    return written


def draw_results(model_dir: Path, results: list[Result], options: FigureOptions = FigureOptions()) -> list[Path]:
    """Every figure of every shape of one model; return the files written."""
    written = []
    for shape in sorted({r.experiment.shape_tag for r in results}):
        of_shape = [r for r in results if r.experiment.shape_tag == shape]
        candidates = tuple(c for c in options.candidates if c.experiment.shape_tag == shape)
        steps = tuple(s for s in options.search_steps if s.experiment.shape_tag == shape)
        written += draw_shape(of_shape, plots_folder(model_dir, shape), f"{Path(model_dir).name}, shape {shape}",
                              replace(options, candidates=candidates, search_steps=steps))  # fmt: skip
    return written


def plot_model(model_dir: Path, keep_outliers: bool = False, baseline: tuple[str, str] | None = None) -> list[Path]:
    """Write every plot of one model from the results on disk (the configurations --tune tried as baseline
    candidates); return the files written."""
    from framework.report.recipes import load_search_steps

    options = FigureOptions(keep_outliers, baseline, tuple(load_results(model_dir, tuning=True)), tuple(load_search_steps(model_dir)))
    return draw_results(Path(model_dir), load_results(model_dir), options)
