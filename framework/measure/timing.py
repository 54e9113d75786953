"""The timed loop. Warm-up is never timed; every iteration's latency is kept.

Host time (``time_host``) is ``time.perf_counter_ns`` around the step; a GPU engine's host step ends with
its outputs on the host, so it has synchronised. Device time (``time_cuda``) is a pair of CUDA events
recorded on the engine's stream around the step, with a synchronisation after each iteration so every
sample is one inference's latency and not an overlap of several. The loop body is kept to two clock
reads, the step call and one list append, so its own cost stays far below a microsecond
(``benchmarks/loop_overhead.py`` prints it).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Timing:
    latencies_ns: tuple[int, ...]  # one per timed iteration, raw
    elapsed_ns: int  # wall time of the whole timed region, for throughput
    warmup: int  # warm-up iterations actually run
    clock: str  # "perf_counter_ns" or "cuda_events"
    enqueue_ns: tuple[int, ...] | None = None  # GPU: host time spent issuing each iteration's work
    started_ns: int = 0  # the clock when the timed region began (resource timelines are aligned on it)


def time_host(
    step: Callable[[], object], iterations: int, warmup: int, *, min_duration_s: float = 0.0,
    warmup_duration_s: float = 0.0, clock: Callable[[], int] = time.perf_counter_ns,
) -> Timing:  # fmt: skip
    """Warm up (at least ``warmup`` steps and ``warmup_duration_s``), then time at least ``iterations`` steps
    and at least ``min_duration_s`` of timed region, whichever ends later."""
    if iterations < 1:
        raise ValueError(f"iterations must be at least 1, got {iterations}")
    warmed = _warm_up(step, warmup, warmup_duration_s, clock)
    samples: list[int] = []
    record = samples.append
    start = clock()
    min_end = start + int(min_duration_s * 1e9)
    # The run-length rule; the clock is read for it only once the count is reached.
    while len(samples) < iterations or clock() < min_end:
        t0 = clock()
        step()
        record(clock() - t0)
    elapsed = clock() - start
    return Timing(tuple(samples), elapsed, warmed, "perf_counter_ns", started_ns=start)


def _warm_up(step, warmup: int, warmup_duration_s: float, clock) -> int:
    done = 0
    end = clock() + int(warmup_duration_s * 1e9)
    while done < warmup or clock() < end:
        step()
        done += 1
    return done


def time_cuda(
    step: Callable[[], object], stream, iterations: int, warmup: int, *, min_duration_s: float = 0.0,
    warmup_duration_s: float = 0.0,
) -> Timing:  # fmt: skip
    """Device time of ``step`` on ``stream`` (a ``torch.cuda.Stream``), one event pair per iteration.

    The host time of each ``step()`` call is kept too (``enqueue_ns``): when it reaches the device time the
    GPU waits for the host (host-bound), and CUDA graphs are the remedy.
    """
    import torch

    if iterations < 1:
        raise ValueError(f"iterations must be at least 1, got {iterations}")
    clock = time.perf_counter_ns
    with torch.cuda.stream(stream):
        warmed = _warm_up(step, warmup, warmup_duration_s, clock)
        stream.synchronize()
        pairs, enqueue = [], []
        begin = clock()
        min_end = begin + int(min_duration_s * 1e9)
        while len(pairs) < iterations or clock() < min_end:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record(stream)
            t0 = clock()
            step()
            enqueue.append(clock() - t0)
            end.record(stream)
            end.synchronize()
            pairs.append((start, end))
        elapsed = clock() - begin
    samples = tuple(int(round(s.elapsed_time(e) * 1e6)) for s, e in pairs)
    return Timing(samples, elapsed, warmed, "cuda_events", tuple(enqueue), started_ns=begin)
