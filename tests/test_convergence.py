"""The adaptive run length and the warm-up's end, on synthetic latencies and a fake clock (no real time)."""

import dataclasses
import itertools
import math

import numpy as np
import pytest

from framework.measure import convergence
from framework.measure.convergence import MedianWatch, RunLength, median_ci_ranks, relative_half_width, trending
from framework.measure.stats import latency_summary
from framework.measure.timing import Timing, _adaptive_cuda, time_host
from framework.measure.validity import judge
from tests.test_validity import result


class Synthetic:
    """A fake clock and a step that takes the next of the given latencies (ns) on it; each clock reading
    advances 1 ns, so the loop's own cost is not zero either."""

    def __init__(self, latencies_ns) -> None:
        self.now, self.latencies, self.steps = 0, iter(latencies_ns), 0

    def clock(self) -> int:
        self.now += 1
        return self.now

    def step(self) -> None:
        self.now += int(next(self.latencies))
        self.steps += 1


def noisy(rng, median_ns, sigma):
    return (median_ns * x for x in iter(lambda: rng.lognormal(0, sigma), None))


def adaptive(synthetic: Synthetic, **kwargs):
    options = {"min_duration_s": 1.0, "max_duration_s": 30.0, "warmup": 10, **kwargs}
    return time_host(synthetic.step, None, clock=synthetic.clock, **options)


def test_stable_latencies_converge_as_soon_as_the_minimums_are_met():
    fake = Synthetic(noisy(np.random.default_rng(0), 1_000_000, 0.01))  # 1 ms, 1% noise
    timing = adaptive(fake)
    stats = latency_summary(timing, 1)
    assert timing.stop_rule == "converged" and stats.stop_rule == "converged"
    assert 1.0 <= stats.timed_region_s < 1.25  # the first check after --min-duration; nowhere near the 30 s cap
    assert stats.ci_half_width <= 0.01 and stats.n == len(timing.latencies_ns)
    assert fake.steps == timing.warmup + stats.n  # warm-up run, not timed
    quick = adaptive(Synthetic(itertools.repeat(1_000_000)), min_duration_s=0.0)
    assert (quick.stop_rule, len(quick.latencies_ns)) == ("converged", 10)  # --min-iterations


def test_noisy_latencies_hit_the_cap_and_the_result_says_not_converged():
    rng = np.random.default_rng(1)
    modes = (1_000_000 if rng.random() < 0.5 else 2_000_000 for _ in itertools.count())  # half at 1 ms, half at 2: no stable median
    timing = adaptive(Synthetic(modes), max_duration_s=3.0)
    stats = latency_summary(timing, 1)
    assert timing.stop_rule == "max-duration" and 3.0 <= stats.timed_region_s < 3.01
    assert stats.ci_half_width > 0.01
    measured = dataclasses.replace(result(), latency=stats, target_ci=0.01)
    assert (
        f"not converged: median's 99% CI ±{stats.ci_half_width * 100:.1f}% after {stats.n} samples (target ±1%)" in judge(measured, 10, 1.0).warnings
    )


def test_the_minimums_win_over_the_cap():
    slow = adaptive(Synthetic(itertools.repeat(400_000_000)), min_duration_s=0.5, max_duration_s=1.0, min_iterations=10)  # 0.4 s a step
    assert len(slow.latencies_ns) == 10 and slow.stop_rule == "converged"
    noisy_slow = adaptive(Synthetic(noisy(np.random.default_rng(2), 400_000_000, 0.5)), min_duration_s=0.5, max_duration_s=1.0)
    assert len(noisy_slow.latencies_ns) == 10 and noisy_slow.stop_rule == "max-duration"


def test_checks_are_few_and_the_loop_between_them_is_plain(monkeypatch):
    """O(n) per check at geometrically spaced n: amortised O(1) per iteration. Checking time is not timed."""
    calls = []
    original = convergence.relative_half_width
    monkeypatch.setattr(convergence, "relative_half_width", lambda v: calls.append(v.size) or original(v))
    rng = np.random.default_rng(3)
    modes = (10_000 if rng.random() < 0.5 else 20_000 for _ in itertools.count())  # 10 or 20 us: it never converges
    timing = adaptive(Synthetic(modes), max_duration_s=10.0)
    n = len(timing.latencies_ns)
    assert timing.stop_rule == "max-duration" and n > 500_000 and len(calls) < 40 and sum(calls) < 8 * n
    assert all(b >= a * 1.2 for a, b in itertools.pairwise(calls[:-1])) and calls[-1] == n  # the last check: at the cap


def test_fixed_mode_is_unchanged():
    fake = Synthetic(itertools.repeat(1_000_000))
    timing = time_host(fake.step, 50, 3, min_duration_s=0.010, clock=fake.clock)
    assert (len(timing.latencies_ns), timing.warmup, timing.stop_rule, timing.warmup_rule) == (50, 3, "iterations", "iterations")
    assert latency_summary(timing, 1).stop_rule == "iterations"


def test_warmup_ends_when_the_latencies_stop_trending():
    stable = adaptive(Synthetic(itertools.repeat(1_000_000)))
    assert stable.warmup_rule == "settled" and stable.warmup == 2 * 25  # two blocks of 25 ms
    decaying = (1_000_000 * (1 + 2 * math.exp(-i / 100)) for i in itertools.count())  # 3 ms falling to 1 ms, time constant 100
    fake = Synthetic(decaying)
    timing = adaptive(fake, min_duration_s=0.1)
    first_timed = timing.latencies_ns[0]
    assert timing.warmup_rule == "settled" and timing.warmup > 400  # the trend ran for hundreds of iterations
    assert abs(first_timed / np.median(timing.latencies_ns) - 1) < 0.02  # the timed loop starts settled
    at_least = adaptive(Synthetic(itertools.repeat(1_000_000)), warmup=500)
    assert at_least.warmup >= 500
    creeping_fake = Synthetic(())
    creeping_fake.latencies = (1_000_000 * math.exp(creeping_fake.now / 5e8) for _ in itertools.count())  # +5% every 25 ms
    creeping = adaptive(creeping_fake, max_duration_s=2.0, min_duration_s=0.1)
    assert creeping.warmup_rule == "max-duration"  # it never settles: cut at --max-duration
    assert latency_summary(creeping, 1).warmup_rule == "max-duration"


def test_the_trend_test_needs_both_a_large_and_a_clear_difference():
    rng = np.random.default_rng(4)
    assert trending([3, 3.1, 3.2, 2.9, 3.0], [1, 1.1, 0.9, 1.0, 1.05], 0.01)
    assert not trending([1.0] * 5, [1.005] * 5, 0.01)  # within the target
    assert not trending(rng.normal(1, 0.1, 5), rng.normal(1.05, 0.1, 5), 0.01)  # within the noise


def test_the_exact_interval_ranks_are_the_binomial_ones():
    def reference(n, confidence=0.99):  # the cumulative-sum algorithm stats used before
        cdf = list(itertools.accumulate(math.comb(n, i) / 2**n for i in range(n + 1)))
        j, k = (n + 1) // 2, n // 2 + 1
        while j >= 1 and k <= n:
            if cdf[k - 1] - (cdf[j - 1] if j >= 1 else 0.0) >= confidence:
                return j - 1, k - 1
            j, k = j - 1, k + 1
        return None

    assert all(median_ci_ranks(n) == reference(n) for n in range(1, 400))
    assert median_ci_ranks(7) is None and median_ci_ranks(8) == (0, 7)
    assert median_ci_ranks(10_000) == (4870, 5129)  # normal approximation beyond 2000


def test_the_watch_agrees_with_the_summary():
    rng = np.random.default_rng(5)
    samples, watch = [], MedianWatch(capacity=16)
    for size in (5, 40, 1000, 30_000):
        samples += [int(x) for x in rng.lognormal(13, 0.2, size - len(samples))]
        width = watch.update(samples)
        assert width == pytest.approx(relative_half_width(np.asarray(samples, dtype=float)))
        if size >= 8:
            assert width == pytest.approx(latency_summary(Timing(tuple(samples), 1, 0, "perf_counter_ns"), 1).ci_half_width)
        else:
            assert width == math.inf  # fewer than 8 samples bound no median at 99%


class FakeEvent:
    """A CUDA event on the synthetic clock: ``elapsed_time`` in milliseconds, as torch's."""

    def __init__(self, fake: Synthetic, enable_timing: bool = True) -> None:
        self.fake, self.at = fake, None

    def record(self, stream) -> None:
        self.at = self.fake.now

    def synchronize(self) -> None:
        assert self.at is not None

    def elapsed_time(self, end) -> float:
        return (end.at - self.at) / 1e6


class FakeStream:
    def synchronize(self) -> None:
        pass


def test_device_time_follows_the_same_rule_reading_events_in_batches():
    fake = Synthetic(noisy(np.random.default_rng(6), 2_000_000, 0.01))
    rule = RunLength(min_duration_s=1.0, max_duration_s=30.0)
    timing = _adaptive_cuda(fake.step, FakeStream(), rule, lambda enable_timing: FakeEvent(fake), clock=fake.clock)
    stats = latency_summary(timing, 1)
    assert timing.clock == "cuda_events" and timing.stop_rule == "converged" and timing.warmup_rule == "settled"
    assert len(timing.enqueue_ns) == stats.n and stats.ci_half_width <= 0.01
    assert 1.9 < stats.median_ms < 2.1 and 1.0 <= stats.timed_region_s < 1.3
    bimodal = Synthetic(2_000_000 * (1 + (i % 2)) for i in itertools.count())
    capped = _adaptive_cuda(bimodal.step, FakeStream(), RunLength(min_duration_s=0.1, max_duration_s=0.5), lambda enable_timing: FakeEvent(bimodal),
                            clock=bimodal.clock)  # fmt: skip
    assert capped.stop_rule == "max-duration"


def test_the_cli_defaults_to_adaptive_and_iterations_selects_fixed():
    from framework.cli import build_parser, settings_from_args

    adaptive_settings = settings_from_args(build_parser().parse_args(["run", "m"])).measure
    assert (adaptive_settings.iterations, adaptive_settings.target_ci, adaptive_settings.min_iterations) == (None, 0.01, 10)
    assert (adaptive_settings.min_duration, adaptive_settings.max_duration, adaptive_settings.required_iterations) == (1.0, 30.0, 10)
    fixed = settings_from_args(build_parser().parse_args(["run", "m", "--iterations", "50", "--target-ci", "0.02"])).measure
    assert (fixed.iterations, fixed.required_iterations, fixed.target_ci) == (50, 50, 0.02)
    from framework.errors import DeployBenchError

    for bad in (["--target-ci", "0"], ["--max-duration", "0.5"], ["--min-iterations", "0"]):
        with pytest.raises(DeployBenchError):
            settings_from_args(build_parser().parse_args(["run", "m", *bad])).measure.validate()
