"""Every measured result is judged ``valid`` or ``invalid`` with the reasons, and carries its warnings apart.

Invalid (kept on disk, shown as invalid, never drawn as a winner, never used by ``compare``):
  fewer samples or a shorter timed region than required; outputs with NaN/Inf; outputs that disagree with
  the PyTorch fp32 reference beyond the precision's cosine-similarity floor (``precisions.py``), before the
  timed run or, on different inputs, after it (stale or constant outputs).
Warnings: coefficient of variation above 10% (pyperf's rule: the figure is unstable); host-bound: issuing an
iteration on the host takes at least 80% of its device time. trtexec warns at 100%, but it does not
synchronise between iterations; here every iteration is synchronised, so the device time of a launch-bound
run is the enqueue time plus the tail of the last kernel and never quite reaches 100%. CUDA graphs are the
remedy. Only engines whose call returns before the GPU finishes are judged (ONNX Runtime's Run blocks).
"""

from __future__ import annotations

import statistics

from framework.measure.stats import CV_WARNING
from framework.precisions import precision
from framework.results.record import Result, Verdict

HOST_BOUND_SHARE = 0.8


def judge(result: Result, required_iterations: int, required_duration_s: float, enqueue_ns: tuple[int, ...] | None = None) -> Verdict:
    """The verdict on a measured result; the caller applies it with ``result.judged(verdict)``."""
    reasons = _sample_reasons(result, required_iterations, required_duration_s) + _output_reasons(result)
    warnings = [
        f"unstable {name}: coefficient of variation {stats.cv:.0%} > {CV_WARNING:.0%}"
        for stats, name in ((result.latency, "latency"), (result.latency_model, "latency-model"))
        if stats is not None and stats.cv > CV_WARNING
    ]
    enqueue_ms = statistics.median(enqueue_ns) / 1e6 if enqueue_ns and result.latency_model else None
    if enqueue_ms is not None and enqueue_ms >= HOST_BOUND_SHARE * result.latency_model.median_ms:
        warnings.append(
            f"host-bound: issuing an iteration takes {enqueue_ms:.3f} ms on the host, the device runs it in "
            f"{result.latency_model.median_ms:.3f} ms; CUDA graphs (--option cuda_graph=true) remove the launch cost"
        )
    warnings += list(result.resources.warnings) if result.resources else []
    return Verdict("invalid" if reasons else "valid", tuple(reasons), tuple(warnings), enqueue_ms)


def _sample_reasons(result: Result, required_iterations: int, required_duration_s: float) -> list[str]:
    latency, reasons = result.latency, []
    if latency.n < required_iterations:
        reasons.append(f"{latency.n} samples, {required_iterations} required")
    if latency.timed_region_s + 1e-9 < required_duration_s:
        reasons.append(f"timed region {latency.timed_region_s:.3f} s, {required_duration_s} s required")
    return reasons


def _output_reasons(result: Result) -> list[str]:
    name = result.experiment.precision
    floor = precision(name).cosine_floor
    worst = result.agreement.worst
    if worst.has_nan_or_inf:
        return ["outputs contain NaN or Inf"]
    if worst.cosine_similarity < floor:
        return [f"outputs disagree with PyTorch fp32: cosine similarity {worst.cosine_similarity:.6f} < {floor} for {name}"]
    after = result.agreement_after_timing.worst if result.agreement_after_timing else None
    if after and (after.has_nan_or_inf or after.cosine_similarity < floor):  # right before, wrong after
        return [
            f"after the timed run, outputs for different inputs disagree with PyTorch (cosine similarity "
            f"{after.cosine_similarity:.6f}): stale or constant outputs"
        ]
    return []
