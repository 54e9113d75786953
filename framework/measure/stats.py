"""Statistics derived from raw latency samples, and the outlier rules the summary and the plots use.

A percentile is reported only when the sample can support it: the largest of n samples lies above the
q-quantile with probability 1 - q**n, so with 99% confidence only when n >= ln(0.01) / ln(q), that is
n >= 44 for p90, 90 for p95 and 459 for p99. Below that it is None ("n/a"), never a number.
The median comes with a 99% confidence interval from order statistics (distribution-free).
"""

from __future__ import annotations

import math

import numpy as np

from framework.measure.convergence import CONFIDENCE, median_ci_ranks
from framework.measure.timing import Timing
from framework.results.record import LatencyStats

PERCENTILES = (90, 95, 99)


def min_samples_for_percentile(p: float, confidence: float = CONFIDENCE) -> int:
    """Smallest n whose maximum bounds the p-th percentile with the given confidence."""
    return math.ceil(math.log(1 - confidence) / math.log(p / 100))


def median_confidence_interval(sorted_values: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float] | None:
    """Order-statistic interval [x_(j), x_(k)] holding the median with at least ``confidence``; None if n too small
    (``convergence.median_ci_ranks``: exact binomial up to n = 2000, its normal approximation beyond)."""
    ranks = median_ci_ranks(int(sorted_values.size), confidence)
    return (float(sorted_values[ranks[0]]), float(sorted_values[ranks[1]])) if ranks else None


def ci_half_width(median: float, ci: tuple[float, float] | None) -> float | None:
    """The interval's larger side relative to the median: +-this much holds the median with 99% confidence."""
    if ci is None or median <= 0:
        return None
    return max(median - ci[0], ci[1] - median) / median


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
    ci = median_confidence_interval(ordered)
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
    summary.update(stop_rule=timing.stop_rule, ci_half_width=ci_half_width(median, ci), warmup_iterations=timing.warmup,
                   warmup_rule=timing.warmup_rule)  # fmt: skip
    return LatencyStats(**summary)


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


def drift(values: np.ndarray, target: float) -> tuple[float, float] | None:
    """(median of the first third, of the last third) when the latencies moved during the run: the two medians
    differ by more than max(the whole sample's CI half-width, ``target``) of the median, AND their own 99%
    intervals are disjoint. The second condition keeps independent, identically distributed samples quiet:
    without it, about a fifth of such runs would be flagged (the thirds' medians are noisier than the whole's).
    None when the run did not drift or has fewer than 24 samples (8 a third give no 99% interval)."""
    values = np.asarray(values, dtype=np.float64)
    third = values.size // 3
    if third < 8:
        return None
    first, last = np.sort(values[:third]), np.sort(values[-third:])
    median = float(np.median(values))
    width = ci_half_width(median, median_confidence_interval(np.sort(values))) or 0.0
    a, b = float(np.median(first)), float(np.median(last))
    ci_a, ci_b = median_confidence_interval(first), median_confidence_interval(last)
    if median <= 0 or abs(b - a) <= max(width, target) * median:
        return None
    return (a, b) if ci_a[1] < ci_b[0] or ci_b[1] < ci_a[0] else None


MODES_MIN_SAMPLES = 60
MODES_DIP = 0.3  # the density between the modes is below this share of both peaks' density
MODES_SIDE = 0.1  # each mode holds at least this share of the samples
MODES_SEPARATION = 0.02  # and the peaks lie at least this far apart, relative to the median


def two_modes(values: np.ndarray) -> tuple[float, float, float] | None:
    """(lower mode, upper mode, share of samples above the dip) when the latencies form two clusters.

    In the sorted samples the local density at sample i is 2m / (x[i+m] - x[i-m]), m = max(15, 2% of n) (a
    span below the clock's resolution, the smallest step between distinct values, counts as that step). Two
    modes: at some sample with at least 10% of the samples on each side, the density falls below 30% of the
    highest density on its left AND on its right (for one mode, one side's highest density is next to it),
    and those two peaks are more than 2% of the median apart. Tested on 10 unimodal shapes (normal, lognormal,
    exponential, uniform, Pareto, quantised, with 5% spikes) at n = 40 to 200,000: no false alarm.
    """
    x = np.sort(np.asarray(values, dtype=np.float64))
    n = x.size
    if n < MODES_MIN_SAMPLES:
        return None
    m = max(15, math.ceil(0.02 * n))
    steps = np.diff(x)
    resolution = float(steps[steps > 0].min()) if (steps > 0).any() else 1.0
    at = np.arange(m, n - m)
    density = 2 * m / np.maximum(x[at + m] - x[at - m], resolution)
    left_peak, right_peak = np.maximum.accumulate(density), np.maximum.accumulate(density[::-1])[::-1]
    dip = density / np.minimum(left_peak, right_peak)
    side = max(math.ceil(MODES_SIDE * n), m)
    dip[(at < side) | (at >= n - side)] = np.inf
    v = int(np.argmin(dip))
    if dip[v] >= MODES_DIP:
        return None
    low, high = x[at[int(np.argmax(density[: v + 1]))]], x[at[v + int(np.argmax(density[v:]))]]
    if high - low <= MODES_SEPARATION * float(np.median(x)):
        return None
    return float(low), float(high), 1 - at[v] / n
