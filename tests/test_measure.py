"""The timed loop and the statistics derived from its raw samples."""

import numpy as np
import pytest

from framework.measure.stats import latency_summary, median_confidence_interval, min_samples_for_percentile, tukey_outliers, without_outliers
from framework.measure.timing import Timing, time_host


def test_adaptive_mode_times_until_the_median_is_known():
    timing = time_host(lambda: sum(range(200)), None, 10, min_duration_s=0.05, max_duration_s=5.0)
    stats = latency_summary(timing, 1)
    assert timing.stop_rule in ("converged", "max-duration") and stats.n >= 10 and stats.timed_region_s >= 0.05
    assert stats.stop_rule == timing.stop_rule and stats.warmup_iterations == timing.warmup >= 10
    assert stats.ci_half_width is not None and (stats.ci_half_width <= 0.01 or timing.stop_rule == "max-duration")


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
    assert summary.n == 10
    assert summary.mean_ms == pytest.approx(5.5)
    assert summary.median_ms == pytest.approx(5.5)
    assert summary.min_ms == 1 and summary.max_ms == 10
    assert summary.std_ms == pytest.approx(np.std(np.arange(1, 11), ddof=1))
    assert summary.p90_ms is None  # 10 samples cannot support p90 (needs 44)
    assert summary.cv == pytest.approx(summary.std_ms / 5.5)
    assert summary.iqr_ms == pytest.approx(4.5) and summary.mad_ms == pytest.approx(2.5)
    assert summary.tukey_outliers == 0
    assert (summary.median_ci99_low_ms, summary.median_ci99_high_ms) == (1, 10)  # n=10: x(1)..x(10) is 99.8%
    # throughput from wall time of the timed region: 10 iterations x 4 items in 0.1 s
    assert summary.throughput_items_per_s == pytest.approx(400)


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


class FakeClock:
    """Advances by a fixed step at every reading: run-length rules are tested without real time."""

    def __init__(self, step_ns: int) -> None:
        self.now, self.step_ns = 0, step_ns

    def __call__(self) -> int:
        self.now += self.step_ns
        return self.now


def test_run_length_is_iterations_and_minimum_duration_whichever_ends_later():
    calls = []
    # each clock reading is 1 ms; a timed iteration reads it 3 times (start, after step, loop check)
    timing = time_host(lambda: calls.append(1), iterations=5, warmup=2, min_duration_s=0.060, clock=FakeClock(1_000_000))
    assert timing.elapsed_ns >= 60_000_000
    assert len(timing.latencies_ns) > 5 and len(calls) == 2 + len(timing.latencies_ns)
    short = time_host(lambda: None, iterations=50, warmup=0, min_duration_s=0.010, clock=FakeClock(1_000_000))
    assert len(short.latencies_ns) == 50  # the count ends later here
    assert (timing.stop_rule, short.stop_rule, timing.warmup_rule) == ("iterations", "iterations", "iterations")  # fixed mode
    warm = time_host(lambda: None, iterations=1, warmup=1, warmup_duration_s=0.020, clock=FakeClock(1_000_000))
    assert warm.warmup >= 9  # two readings per warm-up step: 20 ms of warm-up


def test_percentiles_need_enough_samples():
    assert [min_samples_for_percentile(p) for p in (90, 95, 99)] == [44, 90, 459]
    timing = Timing(tuple(range(1_000_000, 1_000_000 + 459)), 10**9, 0, "perf_counter_ns")
    assert latency_summary(timing, 1).p99_ms is not None
    assert latency_summary(Timing(timing.latencies_ns[:458], 10**9, 0, "perf_counter_ns"), 1).p99_ms is None


def test_median_confidence_interval_covers_the_true_median_99_percent_of_the_time():
    rng = np.random.default_rng(7)
    true_median = np.log(2)  # of the unit exponential: skewed, like latencies
    trials = [median_confidence_interval(np.sort(rng.exponential(size=51))) for _ in range(1000)]
    coverage = np.mean([lo <= true_median <= hi for lo, hi in trials])
    assert coverage >= 0.98  # nominal 99%, exact binomial: allows for the trials' own noise
    assert median_confidence_interval(np.arange(5.0)) is None  # 5 samples cannot give 99%
