"""The timed loop. Warm-up is never timed; every iteration's latency is kept.

Host time (``time_host``) is ``time.perf_counter_ns`` around the step; a GPU engine's host step ends with
its outputs on the host, so it has synchronised. Device time (``time_cuda``) is a pair of CUDA events
recorded on the engine's stream around the step, with a synchronisation after each iteration so every
sample is one inference's latency and not an overlap of several. The loop body is kept to two clock
reads, the step call and one list append, so its own cost stays far below a microsecond
(``benchmarks/loop_overhead.py`` prints it).

Run length: ``iterations=None`` is adaptive (``convergence``: until the median's 99% interval is within
+-``target_ci``, between the minimums and ``max_duration_s``); ``iterations=N`` is the fixed mode, at least
N iterations and ``min_duration_s``, after exactly ``warmup`` iterations and ``warmup_duration_s``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from framework.measure.convergence import (
    DEFAULT_MAX_DURATION_S,
    DEFAULT_MIN_ITERATIONS,
    DEFAULT_TARGET_CI,
    ITERATIONS,
    MedianWatch,
    RunLength,
    Schedule,
    settle,
)


@dataclass(frozen=True)
class Timing:
    latencies_ns: tuple[int, ...]  # one per timed iteration, raw
    elapsed_ns: int  # wall time of the whole timed region, for throughput (adaptive checks excluded)
    warmup: int  # warm-up iterations actually run
    clock: str  # "perf_counter_ns" or "cuda_events"
    enqueue_ns: tuple[int, ...] | None = None  # GPU: host time spent issuing each iteration's work
    started_ns: int = 0  # the clock when the timed region began (resource timelines are aligned on it)
    stop_rule: str | None = None  # what ended the timed loop: converged, max-duration or iterations (fixed)
    warmup_rule: str | None = None  # what ended the warm-up: settled, max-duration or iterations (fixed)


def time_host(
    step: Callable[[], object], iterations: int | None, warmup: int, *, min_duration_s: float = 0.0,
    warmup_duration_s: float = 0.0, clock: Callable[[], int] = time.perf_counter_ns, target_ci: float = DEFAULT_TARGET_CI,
    min_iterations: int = DEFAULT_MIN_ITERATIONS, max_duration_s: float = DEFAULT_MAX_DURATION_S,
) -> Timing:  # fmt: skip
    """Fixed (``iterations`` given): warm up (at least ``warmup`` steps and ``warmup_duration_s``), then time
    at least ``iterations`` steps and at least ``min_duration_s`` of timed region, whichever ends later.
    Adaptive (``iterations=None``): the ``convergence`` rules, for warm-up and run length."""
    if iterations is None:
        rule = RunLength(target_ci, min_iterations, min_duration_s, max_duration_s, warmup, warmup_duration_s)
        return _adaptive_host(step, clock, rule)
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
    return Timing(tuple(samples), elapsed, warmed, "perf_counter_ns", started_ns=start, stop_rule=ITERATIONS, warmup_rule=ITERATIONS)


def _adaptive_host(step, clock, rule: RunLength) -> Timing:
    def block(count: int, until: int) -> list[int]:
        latencies, t1 = [], clock()
        while len(latencies) < count or t1 < until:
            t0 = clock()
            step()
            t1 = clock()
            latencies.append(t1 - t0)
        return latencies

    warmed, warmup_rule = settle(block, clock, rule)
    samples: list[int] = []
    record, watch = samples.append, MedianWatch()
    start = t1 = clock()
    schedule, checking = Schedule(rule, start), 0
    while True:
        count, until, cap = schedule.next_count, schedule.next_time, schedule.cap
        while (len(samples) < count or t1 < until) and t1 < cap:
            t0 = clock()
            step()
            t1 = clock()
            record(t1 - t0)
        check = clock()
        stop = schedule.decide(len(samples), check, lambda: watch.update(samples))
        t1 = clock()
        checking += t1 - check
        if stop is not None:
            return Timing(tuple(samples), t1 - start - checking, warmed, "perf_counter_ns", started_ns=start, stop_rule=stop, warmup_rule=warmup_rule)


def _warm_up(step, warmup: int, warmup_duration_s: float, clock) -> int:
    done = 0
    end = clock() + int(warmup_duration_s * 1e9)
    while done < warmup or clock() < end:
        step()
        done += 1
    return done


def time_cuda(
    step: Callable[[], object], stream, iterations: int | None, warmup: int, *, min_duration_s: float = 0.0,
    warmup_duration_s: float = 0.0, target_ci: float = DEFAULT_TARGET_CI, min_iterations: int = DEFAULT_MIN_ITERATIONS,
    max_duration_s: float = DEFAULT_MAX_DURATION_S,
) -> Timing:  # fmt: skip
    """Device time of ``step`` on ``stream`` (a ``torch.cuda.Stream``), one event pair per iteration; the run
    length as ``time_host``'s, judged on the device times.

    The host time of each ``step()`` call is kept too (``enqueue_ns``): when it reaches the device time the
    GPU waits for the host (host-bound), and CUDA graphs are the remedy.
    """
    import torch

    if iterations is None:
        rule = RunLength(target_ci, min_iterations, min_duration_s, max_duration_s, warmup, warmup_duration_s)
        with torch.cuda.stream(stream):
            return _adaptive_cuda(step, stream, rule, torch.cuda.Event)
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
    samples = tuple(_device_ns(pairs))
    return Timing(samples, elapsed, warmed, "cuda_events", tuple(enqueue), started_ns=begin, stop_rule=ITERATIONS, warmup_rule=ITERATIONS)


def _device_ns(pairs) -> list[int]:
    """Elapsed device times of event pairs whose end events have been synchronised, in nanoseconds."""
    return [int(round(start.elapsed_time(end) * 1e6)) for start, end in pairs]


def _adaptive_cuda(step, stream, rule: RunLength, event, clock=time.perf_counter_ns) -> Timing:
    """The adaptive loop on device time: each iteration synchronises its end event, and the elapsed times of
    the pairs timed since the last check are read in one batch at the check (then the events are dropped)."""
    samples, pairs, enqueue, watch = [], [], [], MedianWatch()

    def iteration() -> int:
        start, end = event(enable_timing=True), event(enable_timing=True)
        start.record(stream)
        t0 = clock()
        step()
        t1 = clock()
        enqueue.append(t1 - t0)
        end.record(stream)
        end.synchronize()
        pairs.append((start, end))
        return t1

    def block(count: int, until: int) -> list[int]:
        t1 = clock()
        while len(pairs) < count or t1 < until:
            t1 = iteration()
        latencies = _device_ns(pairs)
        pairs.clear()
        return latencies

    warmed, warmup_rule = settle(block, clock, rule)
    enqueue.clear()
    stream.synchronize()

    def read(check: bool = True) -> float:
        samples.extend(_device_ns(pairs))
        pairs.clear()
        return watch.update(samples) if check else 0.0

    begin = t1 = clock()
    schedule, checking = Schedule(rule, begin), 0
    while True:
        count, until, cap = schedule.next_count, schedule.next_time, schedule.cap
        while (len(samples) + len(pairs) < count or t1 < until) and t1 < cap:
            t1 = iteration()
        check = clock()
        stop = schedule.decide(len(samples) + len(pairs), check, read)
        t1 = clock()
        checking += t1 - check
        if stop is not None:
            read(check=False)
            return Timing(tuple(samples), t1 - begin - checking, warmed, "cuda_events", tuple(enqueue), started_ns=begin,
                          stop_rule=stop, warmup_rule=warmup_rule)  # fmt: skip
