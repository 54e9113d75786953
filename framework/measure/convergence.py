"""When a timed loop has run long enough (adaptive run length, the default) and when its warm-up has ended.

Adaptive run length: after warm-up, time until the 99% confidence interval of the median (order statistics,
the interval ``stats`` reports) lies within +-``target_ci`` of the median (relative; ``--target-ci``, default
1%), with at least ``min_iterations`` and ``min_duration_s`` and at most ``max_duration_s``; the minimums
win over the cap. The run records which rule ended it (``CONVERGED``, ``MAX_DURATION``; ``ITERATIONS`` in
fixed mode, ``--iterations N``). The half-width is the larger side: max(median - low, high - median) / median.

Checks are cheap: none before the minimums are met, then one each time the count has grown by
``CHECK_GROWTH`` and ``CHECK_INTERVAL_NS`` has passed. A check copies only the new samples into a
preallocated buffer (doubled when full) and selects three order statistics with ``np.partition``: O(n) per
check, at geometrically spaced n, so O(1) per iteration amortised, and the timed loop's body stays two
clock reads, the step and an append. The time spent checking is not counted in the timed region.

Warm-up (adaptive mode): blocks of at least ``WARMUP_BLOCK`` iterations and ``WARMUP_BLOCK_NS``; it ends
once ``warmup`` iterations and ``warmup_duration_s`` have run and the last two blocks show no trend: their
medians differ by at most the target, or their 99% intervals (below 8 samples, their ranges: two disjoint
ranges of 5 happen by chance 0.8% of the time) overlap, so the difference is within the noise.
A warm-up still trending at ``max_duration_s`` ends there (``MAX_DURATION``); fixed mode keeps the plain
count and duration (``ITERATIONS``).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

CONFIDENCE = 0.99
EXACT_RANKS_UP_TO = 2000  # beyond this the binomial is replaced by its normal approximation
DEFAULT_TARGET_CI = 0.01
DEFAULT_MIN_ITERATIONS = 10
DEFAULT_MAX_DURATION_S = 30.0
CHECK_GROWTH = 1.2  # a check once the sample has grown 20% ...
CHECK_INTERVAL_NS = 100_000_000  # ... and 0.1 s has passed since the last one
WARMUP_BLOCK = 5
WARMUP_BLOCK_NS = 25_000_000
CONVERGED, MAX_DURATION, ITERATIONS, SETTLED = "converged", "max-duration", "iterations", "settled"
NEVER = float("inf")


@dataclass(frozen=True)
class RunLength:
    """The adaptive rule's settings (``MeasureSettings``: --target-ci, --min-iterations, ...)."""

    target_ci: float = DEFAULT_TARGET_CI
    min_iterations: int = DEFAULT_MIN_ITERATIONS
    min_duration_s: float = 1.0
    max_duration_s: float = DEFAULT_MAX_DURATION_S
    warmup: int = 10
    warmup_duration_s: float = 0.0


@functools.lru_cache(maxsize=4096)
def median_ci_ranks(n: int, confidence: float = CONFIDENCE) -> tuple[int, int] | None:
    """0-based indices (lo, hi) into n sorted samples whose values bound the median with at least
    ``confidence``; None when n is too small (fewer than 8 at 99%).

    [x_(j), x_(k)] (1-based) covers the median when j <= B <= k - 1, B ~ Binomial(n, 1/2) counting the
    samples below it: widened symmetrically from the middle until that probability reaches ``confidence``,
    in exact integers. For n > 2000 the binomial is normal: ranks n/2 -/+ 2.576 sqrt(n) / 2 (99%).
    """
    if n > EXACT_RANKS_UP_TO:
        half = 2.576 * math.sqrt(n) / 2
        return max(0, math.floor(n / 2 - half) - 1), min(n - 1, math.ceil(n / 2 + half))
    j, k = (n + 1) // 2, n // 2 + 1
    covered, total = sum(math.comb(n, i) for i in range(j, k)), 2**n
    while j >= 1 and k <= n:
        if covered / total >= confidence:
            return j - 1, k - 1
        j, k = j - 1, k + 1
        covered += (math.comb(n, j) if j >= 1 else 0) + (math.comb(n, k - 1) if k <= n else 0)
    return None


def relative_half_width(values: np.ndarray) -> float:
    """max(median - low, high - median) / median of the median's 99% interval; inf when n cannot give one."""
    n = values.size
    ranks = median_ci_ranks(n)
    if ranks is None:
        return NEVER
    middle = sorted({ranks[0], ranks[1], (n - 1) // 2, n // 2})
    part = np.partition(values, middle)
    median = (float(part[(n - 1) // 2]) + float(part[n // 2])) / 2
    low, high = float(part[ranks[0]]), float(part[ranks[1]])
    if median <= 0:
        return 0.0 if high == low else NEVER
    return max(median - low, high - median) / median


class MedianWatch:
    """The half-width of a growing list of samples: new ones copied into a preallocated buffer at each check."""

    def __init__(self, capacity: int = 4096) -> None:
        self._buffer = np.empty(capacity, dtype=np.float64)
        self._n = 0

    def update(self, samples: Sequence[int]) -> float:
        n = len(samples)
        if n > self._buffer.size:
            grown = np.empty(max(n, 2 * self._buffer.size), dtype=np.float64)
            grown[: self._n] = self._buffer[: self._n]
            self._buffer = grown
        self._buffer[self._n : n] = samples[self._n : n]
        self._n = n
        return relative_half_width(self._buffer[:n])


class Schedule:
    """When the adaptive loop next checks (``next_count`` samples and ``next_time`` both reached, or the clock
    at ``cap``) and, at a check, whether it stops and by which rule."""

    def __init__(self, rule: RunLength, start_ns: int) -> None:
        self.rule = rule
        self.min_end = start_ns + int(rule.min_duration_s * 1e9)
        self.max_end = max(self.min_end, start_ns + int(rule.max_duration_s * 1e9))
        self.next_count, self.next_time, self.cap = rule.min_iterations, self.min_end, self.max_end

    def decide(self, n: int, now: int, half_width: Callable[[], float]) -> str | None:
        if n < self.rule.min_iterations:  # the cap came first: the minimum count still wins
            self.next_count, self.next_time, self.cap = self.rule.min_iterations, 0, NEVER
            return None
        if now < self.min_end:
            self.next_count, self.next_time = n, self.min_end
            return None
        if half_width() <= self.rule.target_ci:
            return CONVERGED
        if now >= self.max_end:
            return MAX_DURATION
        self.next_count, self.next_time = max(n + 1, math.ceil(n * CHECK_GROWTH)), now + CHECK_INTERVAL_NS
        return None


def _median_and_ci(values: Sequence[float]) -> tuple[float, float, float]:
    ordered = np.sort(np.asarray(values, dtype=np.float64))
    lo, hi = median_ci_ranks(ordered.size) or (0, ordered.size - 1)
    return float(np.median(ordered)), float(ordered[lo]), float(ordered[hi])


def trending(older: Sequence[float], newer: Sequence[float], target: float) -> bool:
    """Two consecutive blocks of latencies differ: medians more than ``target`` apart (relative) AND their
    99% intervals (ranges, for fewer than 8 samples) disjoint: the difference is not noise."""
    m_old, lo_old, hi_old = _median_and_ci(older)
    m_new, lo_new, hi_new = _median_and_ci(newer)
    if abs(m_new - m_old) <= target * max(m_old, m_new):
        return False
    return hi_old < lo_new or hi_new < lo_old


def settle(run_block: Callable[[int, int], list[int]], clock: Callable[[], int], rule: RunLength) -> tuple[int, str]:
    """Warm up until the last two blocks show no trend; ``run_block(count, until_ns)`` runs at least ``count``
    steps and until the clock reads ``until_ns``, and returns their latencies. Returns (iterations, rule)."""
    start = clock()
    min_end = start + int(rule.warmup_duration_s * 1e9)
    cap = max(min_end, start + int(rule.max_duration_s * 1e9))
    done, previous = 0, None
    while True:
        block = run_block(WARMUP_BLOCK, clock() + WARMUP_BLOCK_NS)
        done, now = done + len(block), clock()
        if done >= rule.warmup and now >= min_end:
            if previous is not None and not trending(previous, block, rule.target_ci):
                return done, SETTLED
            if now >= cap:
                return done, MAX_DURATION
        previous = block
