"""Engines side by side: throughput against batch size, latency bars, and accuracy against latency.

Only valid results are drawn (an invalid one is never shown as a winner); the titles say how many were left
out. GPU engines are shown with latency-all (host clock, copies included) next to latency-model (device
time) where the chart has room for both.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from framework.report.latency import PRECISION_MARKERS, PRECISION_STYLES, engine_color, pyplot, save_figure, series_label


def plot_comparisons(records: list[dict], folder: Path, title: str) -> list[Path]:
    valid = [r for r in records if r.get("validity") == "valid"]
    left_out = len(records) - len(valid)
    note = f" ({left_out} invalid results left out)" if left_out else ""
    if not valid:
        return []
    written = [throughput_vs_batch(valid, folder / "throughput_vs_batch.jpg", title + note),
               latency_bars(valid, folder / "latency_bars.jpg", title + note),
               accuracy_vs_latency(valid, folder / "accuracy_vs_latency.jpg", title + note)]  # fmt: skip
    return [path for path in written if path]


def _series(records: list[dict]) -> dict[tuple[str, str], list[dict]]:
    series: dict[tuple[str, str], list[dict]] = {}
    for record in sorted(records, key=lambda r: (r["engine"], r["precision"], r["batch_size"])):
        series.setdefault((record["engine"], record["precision"]), []).append(record)
    return series


def throughput_vs_batch(records: list[dict], path: Path, title: str) -> Path:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(12, 5.5))
    for (engine, precision), points in _series(records).items():
        batches = [r["batch_size"] for r in points]
        ax.plot(batches, [r["latency"]["throughput_items_per_s"] for r in points], marker="o", color=engine_color(engine),
                ls=PRECISION_STYLES.get(precision, "-"), label=f"{engine} {precision}")  # fmt: skip
        if any(r.get("latency_model") for r in points):
            model = [(r["batch_size"], r["latency_model"]["throughput_items_per_s"]) for r in points if r.get("latency_model")]
            ax.plot(*zip(*model), marker="^", color=engine_color(engine), ls=PRECISION_STYLES.get(precision, "-"), alpha=0.45,
                    label=f"{engine} {precision} (model only, device time)")  # fmt: skip
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    measured = sorted({r["batch_size"] for r in records})
    ax.set_xticks(measured, [str(b) for b in measured])  # the batch sizes measured, not powers of two
    ax.tick_params(axis="x", which="minor", bottom=False, labelbottom=False)
    ax.set(xlabel="batch size", ylabel="throughput (items/s, wall time of the timed loop)", title=f"{title}: throughput against batch size")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)  # beside: a dozen series hid the lines
    save_figure(fig, path)
    return path


def latency_bars(records: list[dict], path: Path, title: str) -> Path:
    plt = pyplot()
    batches = sorted({r["batch_size"] for r in records})
    fig, axes = plt.subplots(len(batches), 1, figsize=(max(8, 1.3 * len(records) / len(batches) + 4), 3.8 * len(batches)), squeeze=False)
    for ax, batch in zip(axes[:, 0], batches):
        chosen = sorted((r for r in records if r["batch_size"] == batch), key=lambda r: (r["engine"], r["precision"]))
        x = np.arange(len(chosen))
        kinds = [("latency", "", "latency-all (host clock)")]
        if any(r.get("latency_model") for r in chosen):
            kinds.append(("latency_model", "//", "latency-model (device time)"))
        width = 0.8 / len(kinds)
        for index, (key, hatch, name) in enumerate(kinds):
            offset = (index - (len(kinds) - 1) / 2) * width
            heights = [r[key]["median_ms"] if r.get(key) else np.nan for r in chosen]
            low = [r[key]["median_ms"] - r[key]["median_ci99_low_ms"] if r.get(key) and r[key].get("median_ci99_low_ms") is not None else 0 for r in chosen]
            high = [r[key]["median_ci99_high_ms"] - r[key]["median_ms"] if r.get(key) and r[key].get("median_ci99_high_ms") is not None else 0 for r in chosen]
            ax.bar(x + offset, heights, width=width, color=[engine_color(r["engine"]) for r in chosen], hatch=hatch, edgecolor="black",
                   linewidth=0.5, yerr=[low, high], capsize=3, label=name)  # fmt: skip
        ax.set_xticks(x, [series_label(r) for r in chosen], rotation=20, ha="right", fontsize=8)
        ax.set(ylabel="median latency (ms), 99% CI", title=f"batch size {batch}")
        ax.grid(alpha=0.3, axis="y")
        ax.legend(fontsize=8)
    fig.suptitle(f"{title}: median latency per engine (plain: latency-all; hatched: latency-model, GPU engines)", fontsize=11)
    save_figure(fig, path)
    return path


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats on both axes (lower x, higher y), by rising x."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best = [], -np.inf
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


AGREEMENT_FLOOR = 1e-9  # 1 - cosine of identical outputs is 0, which a log axis cannot show


def accuracy_vs_latency(records: list[dict], path: Path, title: str) -> Path:
    """Top-1 accuracy where the model has a dataset, else agreement (cosine similarity with PyTorch fp32).

    Points are named in one legend (colour: engine, marker: precision); only the Pareto front's points carry a
    label beside them, since many engines often tie on accuracy and their labels would overlap. Agreement is
    drawn as 1 - cosine on a log axis, better upwards: cosines like 0.99999 and 0.9999999 are otherwise one line."""
    plt = pyplot()
    with_accuracy = all(r.get("accuracy") for r in records)
    metric = "top-1 accuracy on the dataset" if with_accuracy else "agreement with PyTorch fp32"
    batches = sorted({r["batch_size"] for r in records})
    fig, axes = plt.subplots(1, len(batches), figsize=(5.5 * len(batches) + 2.5, 5.2), squeeze=False)
    legend: dict[str, object] = {}
    for ax, batch in zip(axes[0], batches):
        chosen = sorted((r for r in records if r["batch_size"] == batch), key=series_label)
        points = [(r["latency"]["median_ms"], r["accuracy"]["top1"] if with_accuracy else r["agreement"]["worst"]["cosine_similarity"]) for r in chosen]
        front = pareto_front(points)
        drawn = points if with_accuracy else [(x, max(1 - y, AGREEMENT_FLOOR)) for x, y in points]
        for i, (record, (x, y)) in enumerate(zip(chosen, drawn)):
            on_front = i in front
            legend[series_label(record)] = ax.scatter(
                x, y, s=90 if on_front else 50, color=engine_color(record["engine"]), edgecolor="black" if on_front else "none",
                marker=PRECISION_MARKERS.get(record["precision"], "o"), zorder=3,
            )  # fmt: skip
            if on_front:
                ax.annotate(series_label(record), (x, y), textcoords="offset points", xytext=(7, 5), fontsize=8)
        ax.plot(*zip(*[drawn[i] for i in front]), color="black", lw=1, ls="--")
        ax.set(xlabel="median latency (ms, host clock)", title=f"batch size {batch}")
        if with_accuracy:
            low = min(y for _, y in points)
            ax.set(ylabel=metric, ylim=(max(0.0, low - max(0.02, 0.1 * (1 - low))), 1.005))  # accuracy stops at 1
        else:
            ax.set_yscale("log")
            ax.set_ylim(max(y for _, y in drawn) * 3, AGREEMENT_FLOOR / 3)  # inverted: closer to PyTorch is higher
            ax.set_ylabel(f"1 - cosine similarity with PyTorch fp32\n(log, inverted: higher is closer; 0 drawn at {AGREEMENT_FLOOR:g})")
        ax.grid(alpha=0.3)
    handles = [*legend.values(), plt.Line2D([], [], color="black", lw=1, ls="--")]
    axes[0][-1].legend(handles, [*legend, "Pareto front (faster and as accurate)"], fontsize=8, loc="upper left",
                       bbox_to_anchor=(1.02, 1.0), borderaxespad=0)  # fmt: skip
    fig.suptitle(f"{title}: {metric} against latency (circle fp32, square fp16, diamond int8)", fontsize=11)
    save_figure(fig, path)
    return path
