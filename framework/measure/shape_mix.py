"""Timing an engine across shapes: each bucket alone, then a mixed stream whose every iteration has the shape
of a bucket drawn from the distribution.

The steps (one per bucket, built once, outside every timed region) all belong to one loaded engine, so the
mixed stream pays what switching shapes costs the runtime: ONNX Runtime re-planning its memory for another
shape, TensorRT setting input shapes, a ``torch.compile`` guard miss and its recompilation, a CUDA graph per
bucket. The draws are seeded and recorded. Host clock (``perf_counter_ns``) around each call; a GPU engine's
host step ends with its outputs on the host, so it has synchronised. The bucket warm-ups run before the
stream, so nothing is compiled for the first time inside it unless the runtime forgets (``recompiles``).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence

import numpy as np

from framework.measure.timing import Timing, time_host

Step = Callable[[], object]


def time_buckets(steps: Sequence[Step], run_length: dict, clock: Callable[[], int] = time.perf_counter_ns) -> list[Timing]:
    """Each bucket's step timed alone (``time_host``: warm-up excluded, adaptive or fixed per ``run_length``:
    ``iterations``, ``warmup`` and ``time_host``'s keyword arguments)."""
    options = dict(run_length)
    iterations, warmup = options.pop("iterations", None), options.pop("warmup", 3)
    return [time_host(step, iterations, warmup, clock=clock, **options) for step in steps]


def draw_buckets(weights: Sequence[float], iterations: int, seed: int) -> np.ndarray:
    """The bucket index of every iteration of a mixed stream: ``iterations`` draws, seeded."""
    probabilities = np.asarray(weights, dtype=float) / float(np.sum(weights))
    return np.random.default_rng(seed).choice(len(probabilities), size=iterations, p=probabilities)


def mixed_stream(steps: Sequence[Step], draws: Sequence[int], clock: Callable[[], int] = time.perf_counter_ns) -> list[int]:
    """Run ``steps[d]`` for every ``d`` in ``draws``, timing each call (ns); nothing else in the loop."""
    latencies = []
    record = latencies.append
    for bucket in draws:
        step = steps[bucket]
        t0 = clock()
        step()
        record(clock() - t0)
    return latencies


def compiled_graphs() -> int | None:
    """Graphs ``torch.compile`` (TorchDynamo) has compiled in this process so far, or None when torch is not
    loaded. Read twice around a phase, the difference counts that phase's (re)compilations."""
    if "torch" not in sys.modules:
        return None
    try:
        from torch._dynamo.utils import counters
    except ImportError:
        return None
    return int(counters["stats"]["unique_graphs"])


def time_paired(first: Step, second: Step, run_length: dict, clock: Callable[[], int] = time.perf_counter_ns) -> tuple[list[int], list[int]]:
    """``first`` and ``second`` called in alternation, each call timed (ns), after ``warmup`` calls of each: a
    machine whose speed drifts (other processes, clocks) slows both alike, so their ratio stays honest where two
    measurements taken minutes apart would not. Stops after ``iterations`` pairs (fixed) or, adaptive, once both
    medians' 99% intervals are within ``target_ci`` (checked at every 20% more pairs), at least
    ``min_iterations`` pairs and ``min_duration_s``, at most ``max_duration_s``."""
    from framework.measure.stats import ci_half_width, median_confidence_interval

    iterations, warmup = run_length.get("iterations"), run_length.get("warmup", 3)
    need = iterations or run_length.get("min_iterations", 5)
    min_ns, max_ns = int(run_length.get("min_duration_s", 0.0) * 1e9), int(run_length.get("max_duration_s", 2.0) * 1e9)
    for _ in range(warmup):
        first()
        second()
    a: list[int] = []
    b: list[int] = []
    start, check_at = clock(), need

    def converged() -> bool:
        widths = [ci_half_width(float(np.median(x)), median_confidence_interval(np.sort(np.asarray(x, dtype=float)))) for x in (a, b)]
        return all(w is not None and w <= run_length.get("target_ci", 0.02) for w in widths)

    while True:
        t0 = clock()
        first()
        t1 = clock()
        second()
        t2 = clock()
        a.append(t1 - t0)
        b.append(t2 - t1)
        elapsed = t2 - start
        if len(a) >= need and elapsed >= min_ns and (iterations is not None or len(a) >= check_at):
            if iterations is not None or converged():
                return a, b
            check_at = int(len(a) * 1.2) + 1
        if iterations is None and elapsed >= max_ns:
            return a, b
