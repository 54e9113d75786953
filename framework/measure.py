"""The timed loop. Warm-up is never timed; every iteration's latency is kept.

Host time (``time_host``) is ``time.perf_counter_ns`` around the step; a GPU engine's host step ends with
its outputs on the host, so it has synchronised. Device time (``time_cuda``) is a pair of CUDA events
recorded on the engine's stream around the step, with a synchronisation after each iteration so every
sample is one inference's latency and not an overlap of several. The loop body is kept to a local
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


def time_cuda(step: Callable[[], object], stream, iterations: int, warmup: int) -> Timing:
    """Device time of ``step`` on ``stream`` (a ``torch.cuda.Stream``), one event pair per iteration."""
    import torch

    if iterations < 1:
        raise ValueError(f"iterations must be at least 1, got {iterations}")
    with torch.cuda.stream(stream):
        for _ in range(warmup):
            step()
        stream.synchronize()
        starts = [torch.cuda.Event(enable_timing=True) for _ in range(iterations)]
        ends = [torch.cuda.Event(enable_timing=True) for _ in range(iterations)]
        clock = time.perf_counter_ns
        begin = clock()
        for i in range(iterations):
            starts[i].record(stream)
            step()
            ends[i].record(stream)
            ends[i].synchronize()
        elapsed = clock() - begin
    samples = tuple(int(round(s.elapsed_time(e) * 1e6)) for s, e in zip(starts, ends))
    return Timing(samples, elapsed, warmup, "cuda_events")
