"""Statistics derived from raw latency samples, and the outlier rule the plots use."""

from __future__ import annotations

import numpy as np

from framework.measure import Timing

PERCENTILES = (90, 95, 99)


def latency_summary(timing: Timing, batch_size: int) -> dict:
    """Latency figures in milliseconds and throughput in items per second.

    Host-clock throughput divides the items processed by the wall time of the whole timed region, so gaps
    between iterations count against it, as they would in a serving loop. Device-time throughput
    (CUDA events, latency-model) divides them by the summed device time: what the GPU itself sustains.
    """
    ms = np.asarray(timing.latencies_ns, dtype=np.float64) / 1e6
    summary = {
        "n": int(ms.size),
        "mean_ms": float(ms.mean()),
        "std_ms": float(ms.std(ddof=1)) if ms.size > 1 else 0.0,
        "min_ms": float(ms.min()),
        "median_ms": float(np.median(ms)),
    }
    for p in PERCENTILES:
        summary[f"p{p}_ms"] = float(np.percentile(ms, p))
    summary["max_ms"] = float(ms.max())
    seconds = ms.sum() / 1e3 if timing.clock == "cuda_events" else timing.elapsed_ns / 1e9
    summary["throughput_items_per_s"] = batch_size * ms.size / seconds
    return summary


def tukey_outliers(values: np.ndarray, k: float = 1.5) -> np.ndarray:
    """Mask of values beyond Tukey's fences: below Q1 - k*IQR or above Q3 + k*IQR."""
    values = np.asarray(values, dtype=np.float64)
    if values.size < 4:
        return np.zeros(values.shape, dtype=bool)
    q1, q3 = np.percentile(values, [25, 75])
    iqr = q3 - q1
    return (values < q1 - k * iqr) | (values > q3 + k * iqr)


PLOT_OUTLIER_FLOOR = 0.05  # plots hide a point only if it is also this far from the median, relatively


def plot_outliers(values: np.ndarray) -> np.ndarray:
    """Points a latency plot hides: beyond Tukey's fences AND more than 5% away from the median.

    The floor matters for very stable runs: at batch 256 on a GPU the IQR is about 0.02 ms, and pure Tukey
    fences would hide ordinary samples 0.1% from the median.
    """
    values = np.asarray(values, dtype=np.float64)
    far = np.abs(values - np.median(values)) > PLOT_OUTLIER_FLOOR * np.median(values) if values.size else values.astype(bool)
    return tukey_outliers(values) & far


def without_outliers(values: np.ndarray) -> np.ndarray:
    """Copy of ``values`` with plot outliers replaced by NaN (so plots keep the iteration index)."""
    values = np.asarray(values, dtype=np.float64).copy()
    values[plot_outliers(values)] = np.nan
    return values
