"""The figure registry and its draw functions, on results built here (no sweep run): every figure is one
``Figure``, drawn from ``Result`` objects alone; the report package has no import cycle and stays small."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from framework.measure.stats import latency_summary
from framework.measure.timing import Timing
from framework.report.comparisons import pareto_front, valid_only
from framework.report.figures import FIGURES, FigureOptions, draw_shape
from framework.report.latency import series_of
from framework.report.resources import parse_timeline
from framework.report.style import engine_color, hatch, line_style, marker, marker_legend
from framework.results.record import Accuracy, Agreement, AgreementFigures, Experiment, Resources, Result, Samples
from framework.results.store import save_result

REPORT_PACKAGE = Path(__file__).resolve().parents[1] / "framework" / "report"
MODEL, SHAPE = "tiny_cnn", "16x16x3"
CPU_TIMELINE = "t_s,rss_mb,cpu_pct"
GPU_TIMELINE = "t_s,rss_mb,cpu_pct,gpu_util_pct,gpu_mem_used_mb,process_gpu_mem_mb,sm_clock_mhz,temperature_c,power_w,clock_event_reasons"


def _samples_ns(median_ms: float, n: int, seed: int, outliers: int = 3) -> tuple[int, ...]:
    rng = np.random.default_rng(seed)
    values = median_ms * (1 + 0.02 * rng.standard_normal(n))
    values[rng.choice(n, size=min(outliers, n), replace=False)] *= 3  # hiccups the plots hide by default
    return tuple(int(v * 1e6) for v in values)


def _stats(ns: tuple[int, ...], batch: int, clock: str):
    return latency_summary(Timing(ns, elapsed_ns=int(sum(ns) * 1.05), warmup=2, clock=clock), batch)


def _timeline(gpu: bool, seed: int) -> str:
    rows = [GPU_TIMELINE if gpu else CPU_TIMELINE]
    for t in np.arange(-0.2, 1.0, 0.02):
        row = f"{t:.4f},{700 + 50 * seed + 100 * (t > 0):.1f},{90 + 10 * np.sin(5 * t + seed):.1f}"
        rows.append(row + (f",{80 + 5 * np.sin(t)},2100,1500,1980,45,300,none" if gpu else ""))
    return "\n".join(rows) + "\n"


def make_result(engine: str, precision: str, batch: int, *, n: int = 300, median_ms: float = 1.0, validity: str = "valid",
                status: str = "ok", model_ms: float | None = None, cosine: float = 0.99999, top1: float | None = None,
                seed: int = 0, warnings: tuple[str, ...] = (), shape: str = SHAPE) -> Result:  # fmt: skip
    """A result as a run saves it: samples, statistics, agreement and a resource timeline (NVML's for GPU engines)."""
    device = "cuda" if "cuda" in engine or "tensorrt" in engine else "cpu"
    experiment = Experiment(MODEL, shape, ((1, 3, 16, 16),), engine, precision, batch)
    if status != "ok":
        return Result(experiment, runtime="test", device=device, status=status, reason=f"{engine} does not run {precision}")
    ns = _samples_ns(median_ms, n, seed)
    model_ns = _samples_ns(model_ms, n - 20, seed + 1) if model_ms else None
    worst = AgreementFigures(max_abs_error=1e-4, mean_abs_error=1e-5, share_close=1.0, cosine_similarity=cosine,
                             relative_l2_error=1e-4, has_nan_or_inf=False, rtol=1e-3, atol=1e-4, all_close=True)  # fmt: skip
    gpu = dict(peak_process_gpu_mem_mb=1500.0, cuda_context_mb=500.0) if device == "cuda" else {}
    return Result(
        experiment, runtime="test", device=device, status=status, validity=validity, warnings=warnings,
        invalid_reasons=("outputs disagree with PyTorch fp32",) if validity == "invalid" else (),
        latency=_stats(ns, batch, "perf_counter_ns"), latency_model=_stats(model_ns, batch, "cuda_events") if model_ns else None,
        agreement=Agreement(worst), accuracy=Accuracy(1000, top1, min(1.0, top1 + 0.05)) if top1 is not None else None,
        samples=Samples(ns, model_ns), timeline_csv=_timeline(device == "cuda", seed), parameters=1234, model_size_mb=0.1,
        resources=Resources(peak_rss_mb=900.0, rss_before_load_mb=700.0, **gpu),
    )  # fmt: skip


def save_all(output: Path, results: list[Result]) -> Path:
    for result in results:
        save_result(result.experiment.folder(output), result)
    return output / MODEL


def check_jpeg(path: Path, min_size=(700, 350)) -> None:
    assert path.is_file() and path.stat().st_size > 0, path
    with Image.open(path) as image:
        assert image.format == "JPEG", path
        assert image.size[0] >= min_size[0] and image.size[1] >= min_size[1], (path, image.size)
        pixels = np.asarray(image.convert("L"), dtype=float)
    assert pixels.std() > 10, f"{path.name} is blank"


def test_the_registry_names_each_plot_once_with_a_caption():
    names = [f.filename for f in FIGURES]
    assert len(set(names)) == len(names) and all(n.endswith(".jpg") for n in names)
    assert all(f.caption and callable(f.draw) for f in FIGURES)
    known = ["cpu_time_measurements.jpg", "cuda_time_measurements.jpg", "latency_bars.jpg", "throughput_vs_batch.jpg",
             "accuracy_vs_latency.jpg", "cpu_mb_measurements.jpg", "cpu_pct_util_measurements.jpg", "gpu_0_mb_measurements.jpg",
             "gpu_0_pct_util_measurements.jpg"]  # fmt: skip
    assert [n for n in names if n in known] == known  # the report's order; a new figure may go anywhere


def test_precision_styles_come_from_the_precision_table():
    from framework.precisions import PRECISIONS

    for name, p in PRECISIONS.items():
        assert (line_style(name), marker(name), hatch(name)) == (p.line_style, p.marker, p.hatch)
    assert marker_legend() == "circle fp32, square fp16, diamond int8"
    assert engine_color("pytorch-cpu") == "#1f77b4" and engine_color("some-new-engine") == engine_color("some-new-engine")


def test_outliers_are_hidden_unless_kept_and_counted():
    result = make_result("onnxruntime-cpu", "fp32", 1, n=200)
    hidden = series_of(result, keep_outliers=False)
    kept = series_of(result, keep_outliers=True)
    assert hidden.hidden == 3 and np.isnan(hidden.values).sum() == 3 and hidden.values.size == 200
    assert kept.hidden == 0 and not np.isnan(kept.values).any()


def test_gpu_series_are_device_time():
    result = make_result("pytorch-cuda", "fp16", 1, median_ms=1.2, model_ms=0.9)
    values = series_of(result, keep_outliers=True).values
    assert values.size == 280 and abs(np.median(values) - 0.9) < 0.05


def test_comparisons_leave_invalid_results_out_and_say_how_many():
    results = [make_result("pytorch-cpu", "fp32", 1), make_result("onnxruntime-cpu", "int8", 1, validity="invalid")]
    valid, title = valid_only(results, "m")
    assert [r.experiment.engine for r in valid] == ["pytorch-cpu"] and title == "m (1 invalid results left out)"
    assert valid_only(results[:1], "m")[1] == "m"


def test_pareto_front():
    assert pareto_front([(1.0, 0.9), (2.0, 0.95), (1.5, 0.8), (3.0, 0.95)]) == [0, 1]


def test_timeline_columns_that_are_not_numbers_are_nan():
    columns = parse_timeline(_timeline(True, 0))
    assert columns["gpu_util_pct"][0] == pytest.approx(80 + 5 * np.sin(-0.2)) and np.isnan(columns["clock_event_reasons"]).all()


def test_figures_with_nothing_to_show_are_not_drawn_and_stale_files_go(tmp_path):
    stale = tmp_path / "gpu_0_mb_measurements.jpg"
    stale.write_bytes(b"old")
    results = [make_result("pytorch-cpu", "fp32", b, top1=0.9 + 0.01 * b, seed=b) for b in (1, 4)]
    written = draw_shape(results, tmp_path, "tiny_cnn, shape 16x16x3", FigureOptions())
    assert sorted(p.name for p in written) == sorted(["cpu_time_measurements.jpg", "latency_bars.jpg", "throughput_vs_batch.jpg",
                                                      "accuracy_vs_latency.jpg", "cpu_mb_measurements.jpg",
                                                      "cpu_pct_util_measurements.jpg"])  # fmt: skip
    assert not stale.exists() and sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in written)
    for path in written:
        check_jpeg(path)


def test_only_invalid_results_draw_no_comparison(tmp_path):
    results = [make_result("pytorch-cpu", "fp32", 1, validity="invalid")]
    written = {p.name for p in draw_shape(results, tmp_path, "t", FigureOptions())}
    assert "cpu_time_measurements.jpg" in written and not written & {"latency_bars.jpg", "throughput_vs_batch.jpg", "accuracy_vs_latency.jpg"}


def _report_modules() -> dict[str, ast.Module]:
    return {p.stem: ast.parse(p.read_text()) for p in sorted(REPORT_PACKAGE.glob("*.py"))}


def test_the_report_package_has_no_import_cycle():
    edges = {}
    for name, tree in _report_modules().items():
        imported = set()
        for node in ast.walk(tree):  # function-level imports count too: a lazy import hides a cycle, not removes it
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("framework.report."):
                imported.add(node.module.rsplit(".", 1)[1])
            elif isinstance(node, ast.Import):
                imported |= {a.name.rsplit(".", 1)[1] for a in node.names if a.name.startswith("framework.report.")}
        edges[name] = imported
    assert edges["style"] == set()
    done: set[str] = set()

    def visit(name: str, path: tuple[str, ...]) -> None:
        assert name not in path, " -> ".join((*path, name))
        if name not in done:
            for other in edges.get(name, ()):
                visit(other, (*path, name))
            done.add(name)

    for name in edges:
        visit(name, ())


def test_report_files_and_functions_stay_small():
    for name, tree in _report_modules().items():
        assert len((REPORT_PACKAGE / f"{name}.py").read_text().splitlines()) < 400, name
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                assert node.end_lineno - node.lineno + 1 < 50, f"{name}.{node.name}"


def test_tail_latency_draws_a_percentile_only_where_the_sample_supports_it():
    from framework.report.comparisons import _tail_bars
    from framework.report.style import pyplot

    chosen = [make_result("pytorch-cpu", "fp32", 1, n=n, seed=i) for i, n in enumerate((100, 458, 459, 4602, 4603))]
    fig, ax = pyplot().subplots()
    _tail_bars(ax, chosen, 1)
    bars = {(round(p.get_x() + p.get_width() / 2), round(p.get_facecolor()[3], 2)) for p in ax.patches}  # opacity: the percentile
    drawn = [sum(1 for x, _ in bars if x == i) for i in range(len(chosen))]
    pyplot().close(fig)
    assert drawn == [1, 1, 2, 2, 3]  # median always; p99 from 459 samples, p99.9 from 4603
    assert sum(t.get_text() == "n/a" for t in ax.texts) == 2 + 2 + 1 + 1


def test_tail_latency_appears_only_when_a_result_has_the_samples_for_p99_9(tmp_path):
    from framework.report.publish import publish

    short = [make_result("pytorch-cpu", "fp32", 1, n=500), make_result("onnxruntime-cpu", "fp32", 1, n=4602, seed=1),
             make_result("onnxruntime-cpu", "int8", 32, n=6000, seed=2, validity="invalid")]  # fmt: skip
    model_dir = save_all(tmp_path / "short", short)
    done = publish(model_dir)
    assert "tail_latency.jpg" not in {p.name for p in done.plots} and "tail_latency" not in done.report_md.read_text()
    model_dir = save_all(tmp_path / "long", [*short, make_result("onnxruntime-cpu", "int8", 1, n=4603, seed=3)])
    done = publish(model_dir)
    tail = model_dir / "plots" / "16x16x3" / "tail_latency.jpg"
    assert tail in done.plots
    check_jpeg(tail)
    caption = next(f.caption for f in FIGURES if f.filename == "tail_latency.jpg")
    assert f"![{caption}](plots/16x16x3/tail_latency.jpg)" in done.report_md.read_text()


# Plots users can read (issue 15, item 4): log axes, a shade per precision, the speedup chart, titles that fit,
# tied points apart, memory as the engine's own share, throughput from the median.


@pytest.fixture
def drawn(monkeypatch):
    """The figures the draw functions make, drawn (layout done) and kept open instead of saved."""
    from framework.report import comparisons, latency, resources, speedup_chart
    from framework.report.style import pyplot

    figures = []

    def keep(fig, path):
        fig.canvas.draw()
        figures.append(fig)

    for module in (comparisons, latency, resources, speedup_chart):
        monkeypatch.setattr(module, "save_figure", keep)
    yield figures
    for fig in figures:
        pyplot().close(fig)


def test_each_engine_keeps_one_hue_and_each_precision_a_shade_of_it():
    from colorsys import rgb_to_hls

    from matplotlib.colors import to_rgb

    from framework.report.style import ENGINE_COLORS, series_color

    colors = {(e, p): series_color(e, p) for e in ENGINE_COLORS for p in ("fp32", "fp16", "int8")}
    assert len(set(colors.values())) == len(colors)  # every (engine, precision) its own colour
    for engine in ENGINE_COLORS:
        hls = [rgb_to_hls(*to_rgb(colors[engine, p])) for p in ("fp32", "fp16", "int8")]
        assert all(min(abs(h - hls[0][0]), 1 - abs(h - hls[0][0])) < 0.02 for h, _, _ in hls), engine  # one hue family (hue is circular)
        assert hls[0][1] < hls[1][1] < hls[2][1], engine  # fp32 darkest, int8 lightest
    hues = sorted(rgb_to_hls(*to_rgb(engine_color(e)))[0] for e in ENGINE_COLORS)
    assert min(b - a for a, b in zip(hues, [*hues[1:], hues[0] + 1])) > 0.04  # engines differ in hue, not only in shade


def test_a_latency_axis_is_logarithmic_beyond_20x_and_says_so(drawn):
    from framework.report.comparisons import draw_latency_bars
    from framework.report.latency import draw_cpu_latencies
    from framework.report.style import wants_log

    assert not wants_log([1.0, 20.0]) and wants_log([1.0, 20.5]) and not wants_log([0.0, None, float("nan"), 3.0])
    for slow, scale in ((1.5, "linear"), (25.0, "log")):
        results = [make_result("onnxruntime-cpu", "fp32", 1, median_ms=1.0), make_result("pytorch-cpu", "fp32", 1, median_ms=slow, seed=1)]
        assert draw_latency_bars(results, Path("unused.jpg"), "t", FigureOptions())
        assert draw_cpu_latencies(results, Path("unused.jpg"), "t", FigureOptions())
        bars, (series, boxes) = drawn[-2].axes[0], drawn[-1].axes[:2]
        assert bars.get_yscale() == series.get_yscale() == boxes.get_xscale() == scale
        assert ("log scale" in bars.get_ylabel() + series.get_ylabel() + boxes.get_xlabel()) == (scale == "log")


def test_figures_colour_every_series_by_engine_and_precision(drawn):
    from matplotlib.colors import to_rgba

    from framework.report.comparisons import draw_latency_bars, draw_throughput_vs_batch
    from framework.report.style import series_color

    results = [make_result("onnxruntime-cpu", p, b, median_ms=m, seed=i) for i, (p, m) in enumerate((("fp32", 1), ("fp16", 0.8), ("int8", 0.6)))
               for b in (1, 4)]  # fmt: skip
    draw_latency_bars(results, Path("unused.jpg"), "t", FigureOptions())
    draw_throughput_vs_batch(results, Path("unused.jpg"), "t", FigureOptions())
    bars = [p.get_facecolor() for p in drawn[0].axes[0].patches]
    expected = [to_rgba(series_color("onnxruntime-cpu", p)) for p in ("fp16", "fp32", "int8")]  # series order
    assert bars == expected and len(set(bars)) == 3
    lines = {line.get_label(): to_rgba(line.get_color()) for line in drawn[1].axes[0].get_lines()}
    assert all(lines[f"onnxruntime-cpu {p}"] == to_rgba(series_color("onnxruntime-cpu", p)) for p in ("fp32", "fp16", "int8"))


def test_throughput_is_the_batch_over_the_median_and_wall_time_is_labelled(drawn):
    from framework.report.comparisons import draw_throughput_vs_batch

    results = [make_result("pytorch-cpu", "fp32", b, median_ms=0.5 * b, seed=b) for b in (1, 8)]
    assert draw_throughput_vs_batch(results, Path("unused.jpg"), "t", FigureOptions())
    ax = drawn[0].axes[0]
    line = next(line for line in ax.get_lines() if line.get_label() == "pytorch-cpu fp32")
    assert list(line.get_ydata()) == pytest.approx([b * 1000 / r.latency.median_ms for b, r in zip((1, 8), results)])
    assert line.get_ydata()[0] != pytest.approx(results[0].latency.throughput_items_per_s, rel=0.01)  # outliers weigh on wall time
    assert "median" in ax.get_ylabel() and any("wall time" in t.get_text() for t in ax.get_legend().get_texts())


def _with_status(result: Result, status: str, **more) -> Result:
    import dataclasses

    return dataclasses.replace(result, status=status, **more)


def test_the_speedup_chart_draws_each_ratio_with_its_interval_against_the_baseline(tmp_path, drawn):
    from framework.report.speedup_chart import draw_speedup
    from framework.results.speedup import speedups

    results = [make_result("pytorch-cpu", "fp32", 1, median_ms=2.0), make_result("onnxruntime-cpu", "fp32", 1, median_ms=1.0, seed=1),
               make_result("onnxruntime-cpu", "int8", 1, median_ms=0.5, seed=2)]  # fmt: skip
    written = draw_shape(results, tmp_path, "t", FigureOptions())
    assert tmp_path / "speedup.jpg" in written
    ax = next(f.axes[0] for f in drawn if "speedup over" in f.axes[0].get_xlabel())
    found = speedups(results)
    bars = sorted(p.get_x() + p.get_width() for p in ax.patches)  # bars run from 1x to the ratio
    assert bars == pytest.approx(sorted(found[id(r)].ratio for r in results)) and bars[-1] == pytest.approx(4.0, rel=0.05)
    assert all(p.get_x() == 1.0 for p in ax.patches) and any(list(line.get_xdata()) == [1, 1] for line in ax.get_lines())
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels[-1] == "pytorch-cpu fp32 = baseline" and "pytorch-cpu fp32" in ax.get_xlabel()  # fastest on top, baseline last
    texts = [t.get_text() for t in ax.texts]
    assert any(t.startswith(found[id(results[2])].text()) for t in texts)  # ratio [99% interval]
    assert not draw_speedup(results[:1], Path("unused.jpg"), "t", FigureOptions())  # the baseline alone: nothing to say


def test_the_speedup_baseline_may_be_a_tried_configuration_or_one_the_user_names(tmp_path, drawn):
    from framework.report.publish import publish

    fast = make_result("onnxruntime-cpu", "fp32", 1, median_ms=1.0, seed=1)
    model_dir = save_all(tmp_path, [fast, make_result("onnxruntime-cpu", "int8", 1, median_ms=0.5, seed=2)])
    tried = dataclasses.replace(_with_status(make_result("pytorch-cpu", "fp32", 1, median_ms=3.0), "tuning"), tuning={"label": "default"})
    save_result(tried.experiment.folder(tmp_path) / "tuning" / "default", tried)
    assert "speedup.jpg" in {p.name for p in publish(model_dir).plots}
    ax = next(f.axes[0] for f in drawn if "speedup over" in f.axes[0].get_xlabel())
    assert "pytorch-cpu fp32" in ax.get_xlabel() and max(p.get_x() + p.get_width() for p in ax.patches) == pytest.approx(6.0, rel=0.05)
    publish(model_dir, baseline=("onnxruntime-cpu", "fp32"), tables=False, report=False)
    ax = next(f.axes[0] for f in drawn[::-1] if "speedup over" in f.axes[0].get_xlabel())
    assert "onnxruntime-cpu fp32" in ax.get_xlabel() and sorted(p.get_x() + p.get_width() for p in ax.patches) == pytest.approx([1.0, 2.0], rel=0.05)


def test_memory_is_the_engines_own_share_on_a_padded_range(drawn):
    from framework.report.figures import FIGURES
    from framework.report.resources import share_limits

    draw = {f.filename: f.draw for f in FIGURES}
    cpu, gpu = make_result("pytorch-cpu", "fp32", 1), make_result("pytorch-cuda", "fp32", 1, model_ms=1.0, seed=1)
    assert draw["cpu_mb_measurements.jpg"]([cpu], Path("unused.jpg"), "t", FigureOptions())
    assert draw["gpu_0_mb_measurements.jpg"]([gpu], Path("unused.jpg"), "t", FigureOptions())
    (rss,), (gpu_mem,) = drawn[0].axes[0].get_lines()[:1], drawn[1].axes[0].get_lines()[:1]
    raw = parse_timeline(cpu.timeline_csv)["rss_mb"]
    assert list(rss.get_ydata()) == pytest.approx([v - 700.0 for v in raw])  # rss_before_load_mb=700
    assert set(gpu_mem.get_ydata()) == {1000.0}  # 1500 MB (NVML) less the 500 MB CUDA context
    assert "before-load" in drawn[0].axes[0].get_ylabel() and "CUDA context" in drawn[1].axes[0].get_ylabel()
    assert drawn[0].axes[0].get_ylim()[0] == 0 and drawn[0].axes[0].get_ylim()[1] >= max(raw) - 700 + 5
    low, high = share_limits([412.1, 412.9], share=False)  # a flat line is not spread over a 1 MB span
    assert high - low >= 0.2 * 412 and share_limits([0.4, 0.9], share=True) == (0.0, 0.9 + 5.0)
    old = _with_status(cpu, "ok", resources=Resources(peak_rss_mb=900.0))  # saved before the before-load figure was kept
    draw["cpu_mb_measurements.jpg"]([old], Path("unused.jpg"), "t", FigureOptions())
    assert list(drawn[2].axes[0].get_lines()[0].get_ydata()) == pytest.approx(raw) and "resident memory" in drawn[2].axes[0].get_ylabel()


def test_tied_points_are_drawn_apart(drawn):
    from framework.report.comparisons import draw_accuracy_vs_latency, tie_offsets

    assert tie_offsets([(1.0, 0.9), (1.0, 0.9), (5.0, 0.5)]) == [-4.0, 4.0, 0.0]
    assert tie_offsets([(1.0, 0.9), (1.01, 0.9), (1.02, 0.9), (10.0, 0.9)], log_x=True) == [-8.0, 0.0, 8.0, 0.0]
    assert tie_offsets([(1.0, 0.9), (1.02, 0.9)]) == [0.0, 0.0]  # they fill the axis: apart as drawn
    results = [make_result("onnxruntime-cpu", "fp32", 1, median_ms=1.0, top1=0.9), make_result("onnxruntime-cpu", "fp16", 1, median_ms=1.0, top1=0.9)]
    assert draw_accuracy_vs_latency(results, Path("unused.jpg"), "t", FigureOptions())
    ax = drawn[0].axes[0]
    centres = [tuple(c.get_offset_transform().transform(c.get_offsets())[0]) for c in ax.collections]
    assert len(centres) == 2 and abs(centres[0][0] - centres[1][0]) >= 8 and centres[0][1] == pytest.approx(centres[1][1])


def test_titles_fit_in_a_single_panel_figure(drawn):
    from framework.report.comparisons import draw_accuracy_vs_latency

    title = "a_model_with_a_rather_long_name, shape 224x224x3 (and 3 invalid results left out)"
    assert draw_accuracy_vs_latency([make_result("pytorch-cpu", "fp32", 1, top1=0.9)], Path("unused.jpg"), title, FigureOptions())
    fig = drawn[0]
    box, page = fig.get_suptitle() and fig._suptitle.get_window_extent(), fig.bbox
    assert page.x0 <= box.x0 and box.x1 <= page.x1 and box.y1 <= page.y1, (box, page)
    for ax in fig.axes:
        inside = ax.get_tightbbox()
        assert page.x0 <= inside.x0 and inside.x1 <= page.x1 + 1 and page.y0 <= inside.y0, ax.get_title()
