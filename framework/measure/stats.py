"""Statistics derived from raw latency samples, and the outlier rules the summary and the plots use.

A percentile is reported only when the sample can support it: the largest of n samples lies above the
q-quantile with probability 1 - q**n, so with 99% confidence only when n >= ln(0.01) / ln(q), that is
n >= 44 for p90, 90 for p95 and 459 for p99. Below that it is None ("n/a"), never a number.
The median comes with a 99% confidence interval from order statistics (distribution-free).
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from framework.measure.timing import Timing
from framework.results.record import LatencyStats

PERCENTILES = (90, 95, 99)
CONFIDENCE = 0.99
CV_WARNING = 0.10  # coefficient of variation above which a result is flagged unstable (pyperf's rule)


def min_samples_for_percentile(p: float, confidence: float = CONFIDENCE) -> int:
    """Smallest n whose maximum bounds the p-th percentile with the given confidence."""
    return math.ceil(math.log(1 - confidence) / math.log(p / 100))


def median_confidence_interval(sorted_values: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float] | None:
    """Order-statistic interval [x_(j), x_(k)] holding the median with at least ``confidence``; None if n too small."""
    n = sorted_values.size
    # [x_(j), x_(k)] (1-based) covers the median when j <= B <= k - 1, B ~ Binomial(n, 1/2) counting the
    # samples below it. Widen symmetrically from the middle until that probability reaches ``confidence``.
    cdf = list(itertools.accumulate(math.comb(n, i) / 2**n for i in range(n + 1)))
    j, k = (n + 1) // 2, n // 2 + 1
    while j >= 1 and k <= n:
        coverage = cdf[k - 1] - (cdf[j - 1] if j >= 1 else 0.0)
        if coverage >= confidence:
            return float(sorted_values[j - 1]), float(sorted_values[k - 1])
        j, k = j - 1, k + 1
    return None


def latency_summary(timing: Timing, batch_size: int) -> LatencyStats:
    """Latency figures in milliseconds and throughput in items per second.

    Host-clock throughput divides the items processed by the wall time of the whole timed region, so gaps
    between iterations count against it, as they would in a serving loop. Device-time throughput
    (CUDA events, latency-model) divides them by the summed device time: what the GPU itself sustains.
    """
    ms = np.asarray(timing.latencies_ns, dtype=np.float64) / 1e6
    ordered = np.sort(ms)
    n = int(ms.size)
    q1, q3 = np.percentile(ms, [25, 75])
    median = float(np.median(ms))
    mean = float(ms.mean())
    std = float(ms.std(ddof=1)) if n > 1 else 0.0
    ci = median_confidence_interval(ordered) if n <= 2000 else _normal_approx_ci(ordered)
    summary = {
        "n": n,
        "mean_ms": mean,
        "std_ms": std,
        "cv": std / mean if mean > 0 else 0.0,
        "min_ms": float(ordered[0]),
        "median_ms": median,
        "median_ci99_low_ms": ci[0] if ci else None,
        "median_ci99_high_ms": ci[1] if ci else None,
        "iqr_ms": float(q3 - q1),
        "mad_ms": float(np.median(np.abs(ms - median))),
        "tukey_outliers": int(tukey_outliers(ms).sum()),
    }
    for p in PERCENTILES:
        summary[f"p{p}_ms"] = float(np.percentile(ms, p)) if n >= min_samples_for_percentile(p) else None
    summary["max_ms"] = float(ordered[-1])
    seconds = ms.sum() / 1e3 if timing.clock == "cuda_events" else timing.elapsed_ns / 1e9
    summary["throughput_items_per_s"] = batch_size * n / seconds
    summary["timed_region_s"] = timing.elapsed_ns / 1e9
    return LatencyStats(**summary)


def _normal_approx_ci(ordered: np.ndarray) -> tuple[float, float]:
    """For large n the binomial is normal: ranks n/2 -/+ 2.576 * sqrt(n)/2 (99%)."""
    n = ordered.size
    half = 2.576 * math.sqrt(n) / 2
    return float(ordered[max(0, math.floor(n / 2 - half) - 1)]), float(ordered[min(n - 1, math.ceil(n / 2 + half))])


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
