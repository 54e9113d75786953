"""``--repeats K``: one result from the K processes that measured the same experiment.

Samples are pooled (each tagged with its process), each process's median is kept (``process_medians_ms``,
what ``compare`` tests: samples of one process are not independent of each other, processes are), and the
result is invalid or failed if any process's was; ``stages_s`` sums the processes' seconds."""

from __future__ import annotations

import dataclasses

from framework.measure.stats import latency_summary
from framework.measure.timing import Timing
from framework.results.record import Result, Samples


def merge_repeats(results: list[Result]) -> Result:
    failed = [r for r in results if r.status != "ok"]
    if failed:
        return failed[0].ended(failed[0].status, f"{len(failed)} of {len(results)} processes did not finish: {failed[0].reason}")
    first = results[0]
    batch = first.experiment.batch_size
    host = tuple(ns for r in results for ns in r.samples.latencies_ns)
    processes = tuple(index for index, r in enumerate(results) for _ in r.samples.latencies_ns)
    elapsed = sum(round(r.latency.timed_region_s * 1e9) for r in results)
    merged = dataclasses.replace(
        first, latency=latency_summary(Timing(host, elapsed, first.warmup or 0, first.clock), batch), repeats=len(results),
        process_medians_ms=tuple(r.latency.median_ms for r in results),
        invalid_reasons=tuple(dict.fromkeys(x for r in results for x in r.invalid_reasons)),
        warnings=tuple(dict.fromkeys(x for r in results for x in r.warnings)),
        started_at=min((r.started_at for r in results if r.started_at is not None), default=None), stages_s=summed_stages(results),
    )  # fmt: skip
    device = None
    if all(r.latency_model and r.samples.model_latencies_ns for r in results):
        device = tuple(ns for r in results for ns in r.samples.model_latencies_ns)
        elapsed = sum(round(r.latency_model.timed_region_s * 1e9) for r in results)
        merged = dataclasses.replace(merged, latency_model=latency_summary(Timing(device, elapsed, first.warmup or 0, "cuda_events"), batch),
                                     process_model_medians_ms=tuple(r.latency_model.median_ms for r in results))  # fmt: skip
    return dataclasses.replace(merged, samples=Samples(host, device, processes), validity="invalid" if merged.invalid_reasons else "valid")


def summed_stages(results: list[Result]) -> dict[str, float]:
    """Each stage's seconds over the K processes: what the experiment cost the sweep."""
    total: dict[str, float] = {}
    for result in results:
        for stage, seconds in result.stages_s.items():
            total[stage] = round(total.get(stage, 0.0) + seconds, 4)
    return total
