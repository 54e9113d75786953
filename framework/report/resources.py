"""Resources over time, per engine: the file names users of the original scripts know.

One figure per resource, one row per batch size, one line per engine and precision, from each
experiment's ``resources.csv`` (time 0 is the start of the timed loop; negative times are the warm-up).
GPU figures are drawn only when NVML sampled something.
"""

from __future__ import annotations

import csv
from pathlib import Path

from framework.report.latency import PRECISION_STYLES, engine_color, pyplot, save_figure, series_label

FIGURES = [  # (file name, column, axis label, needs a GPU)
    ("cpu_mb_measurements.jpg", "rss_mb", "resident memory (MB, process and children)", False),
    ("cpu_pct_util_measurements.jpg", "cpu_pct", "CPU use (% of one core)", False),
    ("gpu_0_mb_measurements.jpg", "process_gpu_mem_mb", "GPU 0 memory of the process (MB, NVML)", True),
    ("gpu_0_pct_util_measurements.jpg", "gpu_util_pct", "GPU 0 utilisation (%)", True),
]


def read_timeline(directory: Path) -> dict[str, list[float]]:
    path = Path(directory) / "resources.csv"
    if not path.exists():
        return {}
    with path.open() as handle:
        rows = list(csv.DictReader(handle))
    return {key: [float(r[key]) if r[key] not in ("", None) else float("nan") for r in rows] for key in (rows[0] if rows else {})}


def plot_resources(records: list[dict], folder: Path, title: str) -> list[Path]:
    timelines = {r["_dir"]: read_timeline(Path(r["_dir"])) for r in records}
    written = []
    for filename, column, label, needs_gpu in FIGURES:
        chosen = [r for r in records if column in timelines[r["_dir"]]]
        if not chosen:
            continue
        plt = pyplot()
        batches = sorted({r["batch_size"] for r in chosen})
        fig, axes = plt.subplots(len(batches), 1, figsize=(12, max(4.5, 3.4 * len(batches))), squeeze=False)
        for ax, batch in zip(axes[:, 0], batches):
            for record in sorted((r for r in chosen if r["batch_size"] == batch), key=lambda r: (r["engine"], r["precision"])):
                timeline = timelines[record["_dir"]]
                ax.plot(timeline["t_s"], timeline[column], ls=PRECISION_STYLES.get(record["precision"], "-"), lw=1.2,
                        color=engine_color(record["engine"]), label=series_label(record))  # fmt: skip
            ax.axvline(0, color="grey", lw=0.8, ls=":")
            ax.set(xlabel="time since the timed loop began (s); left of the dotted line: warm-up", ylabel=label, title=f"batch size {batch}")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8, loc="upper right")
        fig.suptitle(f"{title}: {label} during each experiment (own process each)", fontsize=11)
        save_figure(fig, folder / filename)
        written.append(folder / filename)
    return written
