"""The timed loop and the statistics derived from its raw samples."""

import numpy as np
import pytest

from framework.measure import Timing, time_host
from framework.stats import latency_summary, tukey_outliers, without_outliers


def test_warmup_is_run_but_not_timed():
    calls = []
    timing = time_host(lambda: calls.append(1), iterations=7, warmup=3)
    assert len(calls) == 10
    assert len(timing.latencies_ns) == 7
    assert all(ns >= 0 for ns in timing.latencies_ns)
    assert timing.elapsed_ns >= sum(timing.latencies_ns)
    assert timing.warmup == 3 and timing.clock == "perf_counter_ns"


def test_latency_of_a_sleeping_step_is_measured_not_invented():
    import time

    timing = time_host(lambda: time.sleep(0.002), iterations=5, warmup=0)
    assert min(timing.latencies_ns) >= 2_000_000  # sleep never returns early
    with pytest.raises(ValueError, match="iterations must be at least 1"):
        time_host(lambda: None, iterations=0, warmup=0)


def test_summary_on_known_samples():
    samples = tuple(int(ms * 1e6) for ms in [1, 2, 3, 4, 5, 6, 7, 8, 9, 10])
    summary = latency_summary(Timing(samples, elapsed_ns=int(0.1e9), warmup=0, clock="perf_counter_ns"), batch_size=4)
    assert summary["n"] == 10
    assert summary["mean_ms"] == pytest.approx(5.5)
    assert summary["median_ms"] == pytest.approx(5.5)
    assert summary["min_ms"] == 1 and summary["max_ms"] == 10
    assert summary["std_ms"] == pytest.approx(np.std(np.arange(1, 11), ddof=1))
    assert summary["p90_ms"] == pytest.approx(9.1)
    # throughput from wall time of the timed region: 10 iterations x 4 items in 0.1 s
    assert summary["throughput_items_per_s"] == pytest.approx(400)


def test_tukey_outliers_and_nan_replacement():
    values = np.array([10, 11, 10, 12, 11, 10, 95, 11, 1], dtype=float)
    mask = tukey_outliers(values)
    assert mask.tolist() == [False] * 6 + [True, False, True]
    cleaned = without_outliers(values)
    assert np.isnan(cleaned[[6, 8]]).all() and cleaned.size == values.size
    assert np.isnan(cleaned).sum() == 2
    # a very stable run: Tukey flags a sample 0.5% off, the plot keeps it; a 20% spike is still hidden
    stable = np.array([18.60, 18.61, 18.60, 18.61, 18.60, 18.61, 18.60, 18.70, 22.4])
    assert tukey_outliers(stable).tolist() == [False] * 7 + [True, True]
    assert np.isnan(without_outliers(stable)).tolist() == [False] * 8 + [True]
    assert not tukey_outliers(np.array([1.0, 100.0])).any()  # too few samples to call anything an outlier
