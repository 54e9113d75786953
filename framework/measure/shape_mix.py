"""Timing an engine across shapes: every bucket in interleaved rounds, then a mixed stream whose every iteration
has the shape of a bucket drawn from the distribution; and two steps in alternation (static against dynamic).

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
from dataclasses import dataclass

import numpy as np

Step = Callable[[], object]


BLOCK_S = 0.05  # one bucket's block of calls in a round of ``time_buckets``


@dataclass(frozen=True)
class BucketSamples:
    latencies_ns: tuple[int, ...]  # steady state: calls after the first of each block
    stop_rule: str  # converged, max-duration or iterations
    switch_ns: tuple[int, ...] = ()  # the first call of each block, right after another bucket's shape


def time_buckets(steps: Sequence[Step], run_length: dict, clock: Callable[[], int] = time.perf_counter_ns) -> list[BucketSamples]:
    """Every bucket's step timed in rounds: each round runs a block of about ``BLOCK_S`` of every bucket in turn,
    so a drifting machine weighs on all buckets alike and the latency-against-shape curve keeps its shape (timed
    one after the other on a loaded VM, neighbouring buckets came out 2-4x apart). The first call of each block
    follows another shape: it is kept apart (``switch_ns``, what a shape switch costs) and left out of the
    bucket's own samples, which are its steady state (ONNX Runtime's CUDA convolutions re-search their algorithm
    after a switch, and that cost would otherwise pass for the bucket's latency). After ``warmup`` calls of
    each, rounds go on until every bucket has ``iterations`` samples (fixed), or, adaptive, every median's 99%
    interval is within ``target_ci`` with at least ``min_iterations`` samples each; in either mode for at least
    ``min_duration_s`` per bucket, and adaptive at most ``max_duration_s`` per bucket."""
    iterations, warmup = run_length.get("iterations"), run_length.get("warmup", 3)
    need = iterations or run_length.get("min_iterations", 5)
    count = len(steps)
    min_ns, max_ns = int(run_length.get("min_duration_s", 0.0) * 1e9) * count, int(run_length.get("max_duration_s", 2.0) * 1e9) * count
    per_call = []
    for step in steps:
        t0 = clock()
        for _ in range(max(warmup, 1)):
            step()
        per_call.append(max((clock() - t0) / max(warmup, 1), 1.0))
    samples: list[list[int]] = [[] for _ in steps]
    switches: list[list[int]] = [[] for _ in steps]
    start = clock()
    while True:
        for step, cost, taken, switched in zip(steps, per_call, samples, switches):
            for call in range(1 + max(1, int(BLOCK_S * 1e9 / cost))):
                t0 = clock()
                step()
                (taken if call else switched).append(clock() - t0)
        elapsed = clock() - start
        enough = all(len(x) >= need for x in samples) and elapsed >= min_ns
        if enough and (iterations is not None or _converged(samples, run_length.get("target_ci", 0.02))):
            return [BucketSamples(tuple(x), "iterations" if iterations is not None else "converged", tuple(w)) for x, w in zip(samples, switches)]
        if iterations is None and elapsed >= max_ns:
            return [BucketSamples(tuple(x), "max-duration", tuple(w)) for x, w in zip(samples, switches)]


def _converged(samples: list[list[int]], target: float) -> bool:
    from framework.measure.stats import ci_half_width, median_confidence_interval

    for x in samples:
        ordered = np.sort(np.asarray(x, dtype=float))
        width = ci_half_width(float(np.median(ordered)), median_confidence_interval(ordered))
        if width is None or width > target:
            return False
    return True


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
    """``first`` and ``second`` called in alternation (ABBA), each call timed (ns), after ``warmup`` calls of each: a
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

    while True:  # ABBA: the order flips every pair, so neither side always runs right after the other
        flip = len(a) % 2 == 1
        t0 = clock()
        (second if flip else first)()
        t1 = clock()
        (first if flip else second)()
        t2 = clock()
        a.append(t2 - t1 if flip else t1 - t0)
        b.append(t1 - t0 if flip else t2 - t1)
        elapsed = t2 - start
        if len(a) >= need and elapsed >= min_ns and (iterations is not None or len(a) >= check_at):
            if iterations is not None or converged():
                return a, b
            check_at = int(len(a) * 1.2) + 1
        if iterations is None and elapsed >= max_ns:
            return a, b
