"""Every picture of a model, drawn from the raw data on disk so it can be rebuilt without measuring again.

Written to ``<model>/plots/<shape>/``:
- ``cpu_time_measurements.jpg`` / ``cuda_time_measurements.jpg`` (here): one row per batch size; on the
  left every timed iteration in order (drift and hiccups show), on the right the distribution per engine
  and precision. Outliers are replaced by NaN by default: points beyond Tukey's fences (1.5 IQR outside the
  quartiles) that are also more than 5% from the median; the title says how many were hidden.
- ``cpu_mb``, ``cpu_pct_util``, ``gpu_0_mb``, ``gpu_0_pct_util`` ``_measurements.jpg``: resources over
  time per engine (``plot_resources``).
- ``throughput_vs_batch.jpg``, ``latency_bars.jpg``, ``accuracy_vs_latency.jpg``: engines side by side
  (``plot_comparisons``).
Each engine keeps one colour in every figure; precisions differ by line style or hatching.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from framework.results.store import load_experiments, read_latencies_ms, safe_component
from framework.measure.stats import without_outliers

# One colour per engine, the same in every figure.
ENGINE_COLORS = {
    "pytorch-cpu": "#1f77b4",
    "onnxruntime-cpu": "#ff7f0e",
    "pytorch-cuda": "#2ca02c",
    "onnxruntime-cuda": "#d62728",
    "onnxruntime-tensorrt": "#9467bd",
    "tensorrt": "#8c564b",
}
_FALLBACK = ["#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]
# Precisions of one engine share its colour and differ in line style (and hatching in box plots).
PRECISION_STYLES = {"fp32": "-", "fp16": "--", "int8": ":"}
PRECISION_MARKERS = {"fp32": "o", "fp16": "s", "int8": "D"}  # scatter plots
DEVICE_PLOT_NAMES = {"cpu": "cpu_time_measurements.jpg", "cuda": "cuda_time_measurements.jpg"}


def engine_color(engine: str) -> str:
    return ENGINE_COLORS.get(engine) or _FALLBACK[sum(map(ord, engine)) % len(_FALLBACK)]


def plot_model(model_dir: Path, keep_outliers: bool = False) -> list[Path]:
    """Write every plot of one model; return the files written."""
    from framework.report.comparisons import plot_comparisons
    from framework.report.resources import plot_resources

    records = [r for r in load_experiments(model_dir) if r.get("status") == "ok"]
    written = []
    for shape in sorted({r["shape_tag"] for r in records}):
        folder = model_dir / "plots" / safe_component(shape)
        of_shape = [r for r in records if r["shape_tag"] == shape]
        for device, filename in DEVICE_PLOT_NAMES.items():
            chosen = [r for r in of_shape if r.get("device") == device]
            if chosen:
                plot_latencies(chosen, folder / filename, f"{model_dir.name}, shape {shape}, {device.upper()} engines", keep_outliers)
                written.append(folder / filename)
        written += plot_resources(of_shape, folder, f"{model_dir.name}, shape {shape}")
        written += plot_comparisons(of_shape, folder, f"{model_dir.name}, shape {shape}")
    return written


def series_label(record: dict, batch: bool = False) -> str:
    return f"{record['engine']} {record['precision']}" + (f" bs{record['batch_size']}" if batch else "")


def save_figure(fig, path: Path) -> None:
    """JPEG, written under a temporary name and renamed, then the figure closed."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    fig.savefig(tmp, dpi=100, format="jpeg")
    plt.close(fig)
    tmp.replace(path)


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_latencies(records: list[dict], path: Path, title: str, keep_outliers: bool) -> None:
    plt = pyplot()
    batch_sizes = sorted({r["batch_size"] for r in records})
    fig, axes = plt.subplots(len(batch_sizes), 2, figsize=(13, 3.8 * len(batch_sizes)), squeeze=False,
                             gridspec_kw={"width_ratios": [3, 2]})  # fmt: skip
    hidden_total = 0
    for row, batch in enumerate(batch_sizes):
        series_ax, dist_ax = axes[row]
        labels, data, colors = [], [], []
        for record in sorted((r for r in records if r["batch_size"] == batch), key=lambda r: (r["engine"], r["precision"])):
            # CUDA plots show device time (latency-model); CPU plots the host clock.
            column = "latency_model_ms" if record.get("latency_model") else "latency_ms"
            values = np.asarray(read_latencies_ms(Path(record["_dir"]) / "latencies.csv", column))
            if not keep_outliers:
                cleaned = without_outliers(values)
                hidden_total += int(np.isnan(cleaned).sum() - np.isnan(values).sum())
                values = cleaned
            label = series_label(record)
            color = engine_color(record["engine"])
            style = PRECISION_STYLES.get(record["precision"], "-")
            series_ax.plot(np.arange(values.size), values, marker=".", ls=style, ms=3, lw=0.8, color=color, label=label, alpha=0.85)
            labels.append(label)
            data.append(values[~np.isnan(values)])
            colors.append(color)
        unit = "device time, CUDA events" if any(r.get("latency_model") for r in records) else "host clock"
        series_ax.set(xlabel="timed iteration", ylabel=f"latency (ms, {unit})", title=f"batch size {batch}: every iteration")
        series_ax.grid(alpha=0.3)
        series_ax.legend(fontsize=8, loc="upper right")
        box = dist_ax.boxplot(data, orientation="horizontal", patch_artist=True, showfliers=keep_outliers)
        for patch, color, label in zip(box["boxes"], colors, labels):
            patch.set(facecolor=color, alpha=0.6, hatch="//" if label.endswith("fp16") else "xx" if label.endswith("int8") else "")
        dist_ax.set_yticks(range(1, len(labels) + 1), labels, fontsize=8)
        dist_ax.set(xlabel="latency (ms)", title=f"batch size {batch}: distribution (median line)")
        dist_ax.grid(alpha=0.3, axis="x")
    rule = "all points shown" if keep_outliers else f"{hidden_total} outliers hidden: beyond 1.5 IQR and 5% from the median"
    fig.suptitle(f"{title} ({rule}); warm-up excluded", fontsize=11)
    save_figure(fig, path)
