"""The timed loop. Warm-up is never timed; every iteration's latency is kept.

Host engines are timed with ``time.perf_counter_ns`` around the step. The loop body is kept to a local
clock call, the step call and one list store, so its own cost stays far below a microsecond
(``benchmarks/loop_overhead.py`` prints it).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class Timing:
    latencies_ns: tuple[int, ...]  # one per timed iteration, raw
    elapsed_ns: int  # wall time of the whole timed region, for throughput
    warmup: int
    clock: str  # "perf_counter_ns" or "cuda_events"


def time_host(step: Callable[[], object], iterations: int, warmup: int) -> Timing:
    """Run ``warmup`` untimed steps, then ``iterations`` timed ones."""
    if iterations < 1:
        raise ValueError(f"iterations must be at least 1, got {iterations}")
    for _ in range(warmup):
        step()
    clock = time.perf_counter_ns
    samples = [0] * iterations
    start = clock()
    for i in range(iterations):
        t0 = clock()
        step()
        samples[i] = clock() - t0
    elapsed = clock() - start
    return Timing(tuple(samples), elapsed, warmup, "perf_counter_ns")
