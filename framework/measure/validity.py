"""Every measured result is judged ``valid`` or ``invalid`` with the reasons, and carries its warnings apart.

Invalid (kept on disk, shown as invalid, never drawn as a winner, never used by ``compare``):
  fewer samples or a shorter timed region than required; outputs with NaN/Inf; outputs that disagree with
  the PyTorch fp32 reference beyond the precision's thresholds (``precisions.py``: cosine floor, relative-L2
  ceiling, share of elements within the precision's tolerance), before the timed run, after it on different
  inputs, or over the dataset (there also a top-1 agreement floor for class scores); and, at every precision,
  stale or constant outputs: the engine answers the different inputs exactly as it answered the timed ones
  while PyTorch's answer changes.
Warnings. About each timed loop's samples (latency, latency-model): "not converged" when an adaptive run hit
--max-duration before the median's 99% CI came within +-target ("imprecise" when a fixed-length run,
--iterations, ended so), or when its warm-up still trended there; drift (``stats.drift``: the medians of the
first and last thirds differ by more than max(CI half-width, target), with disjoint 99% intervals); two
modes (``stats.two_modes``: two clusters of at least 10% each; the median may land on either from run to
run). The resource sampler's (other processes using the GPU or the CPU). Host-bound: issuing an
iteration on the host takes at least 80% of its device time. trtexec warns at 100%, but it does not
synchronise between iterations; here every iteration is synchronised, so the device time of a launch-bound
run is the enqueue time plus the tail of the last kernel and never quite reaches 100%. CUDA graphs are the
remedy. Only engines whose call returns before the GPU finishes are judged (ONNX Runtime's Run blocks).
An engine running the ONNX graph is warned when the export traced with TracerWarnings: Python control flow
on tensor values was frozen at the example input, and other inputs may take a branch the graph lacks.
"""

from __future__ import annotations

import statistics

import numpy as np

from framework.measure.convergence import DEFAULT_TARGET_CI, MAX_DURATION
from framework.measure.stats import ci_half_width, drift, two_modes
from framework.precisions import Precision, precision
from framework.results.record import AgreementFigures, Result, Verdict

HOST_BOUND_SHARE = 0.8
# Stale or constant outputs, the same at every precision: the engine's answer changed by at most
# STALE_ENGINE_CHANGE (relative L2; 0 when bit-identical) from the timed inputs to the different ones, while
# PyTorch's changed by more than STALE_REFERENCE_CHANGE. Below that, the model barely reacts to the change, and
# an honest low-precision engine could round both answers to the same numbers.
STALE_ENGINE_CHANGE = 1e-6
STALE_REFERENCE_CHANGE = 1e-3


def judge(result: Result, required_iterations: int, required_duration_s: float, enqueue_ns: tuple[int, ...] | None = None) -> Verdict:
    """The verdict on a measured result; the caller applies it with ``result.judged(verdict)``."""
    reasons = _sample_reasons(result, required_iterations, required_duration_s) + _output_reasons(result)
    warnings = _sample_warnings(result)
    enqueue_ms = statistics.median(enqueue_ns) / 1e6 if enqueue_ns and result.latency_model else None
    if enqueue_ms is not None and enqueue_ms >= HOST_BOUND_SHARE * result.latency_model.median_ms:
        warnings.append(
            f"host-bound: issuing an iteration takes {enqueue_ms:.3f} ms on the host, the device runs it in "
            f"{result.latency_model.median_ms:.3f} ms; CUDA graphs (--option cuda_graph=true) remove the launch cost"
        )
    warnings += _trace_warnings(result)
    warnings += list(result.resources.warnings) if result.resources else []
    return Verdict("invalid" if reasons else "valid", tuple(reasons), tuple(warnings), enqueue_ms)


def _sample_warnings(result: Result) -> list[str]:
    """What the timed loops' samples say about the median: how precise it is, whether it moved, whether it is
    one of two modes. Pure: the figures and raw samples the result carries."""
    target = result.target_ci or DEFAULT_TARGET_CI
    raw = result.samples
    loops = ((result.latency, raw.latencies_ns if raw else None, "latency"),
             (result.latency_model, raw.model_latencies_ns if raw else None, "latency-model"))  # fmt: skip
    warnings = []
    for stats, samples, name in loops:
        if stats is None:
            continue
        warnings += _precision_warnings(stats, name, target)
        if samples:
            ms = np.asarray(samples, dtype=np.float64) / 1e6
            moved, modes = drift(ms, target), two_modes(ms)
            if moved:
                change = moved[1] / moved[0] - 1
                warnings.append(f"drift in {name}: the median of the last third of the samples is {change:+.1%} from the first third's "
                                f"({moved[0]:.4g} -> {moved[1]:.4g} ms), beyond ±{_pct(max(stats.ci_half_width or 0, target))}")  # fmt: skip
            if modes:
                warnings.append(f"two modes in {name}: samples cluster near {modes[0]:.4g} ms and {modes[1]:.4g} ms "
                                f"({modes[2]:.0%} in the upper one); the median may land on either from run to run")  # fmt: skip
    return warnings


def _precision_warnings(stats, name: str, target: float) -> list[str]:
    label = "" if name == "latency" else f"{name} "
    warnings = []
    if stats.warmup_rule == MAX_DURATION:
        warnings.append(f"{label}warm-up still trending when it was cut at --max-duration after {stats.warmup_iterations} iterations")
    width = stats.ci_half_width
    if width is None and stats.median_ci99_low_ms is not None:  # a record written before the half-width was kept
        width = ci_half_width(stats.median_ms, (stats.median_ci99_low_ms, stats.median_ci99_high_ms))
    if width is not None and width <= target * (1 + 1e-9):
        return warnings
    reached = f"±{_pct(width, 1)}" if width is not None else "undefined"
    head = "not converged: " if stats.stop_rule == MAX_DURATION else "imprecise: "
    return warnings + [f"{head}{label}median's 99% CI {reached} after {stats.n} samples (target ±{_pct(target)})"]


def _pct(share: float, digits: int | None = None) -> str:
    return f"{share * 100:.{digits}f}%" if digits is not None else f"{share * 100:g}%"


def _sample_reasons(result: Result, required_iterations: int, required_duration_s: float) -> list[str]:
    latency, reasons = result.latency, []
    if latency.n < required_iterations:
        reasons.append(f"{latency.n} samples, {required_iterations} required")
    if latency.timed_region_s + 1e-9 < required_duration_s:
        reasons.append(f"timed region {latency.timed_region_s:.3f} s, {required_duration_s} s required")
    return reasons


def _output_reasons(result: Result) -> list[str]:
    name = result.experiment.precision
    p = precision(name)
    if result.agreement.worst.has_nan_or_inf:
        return ["outputs contain NaN or Inf"]
    reasons = _disagreement(result.agreement.worst, p, name, "outputs disagree with PyTorch fp32")
    after = result.agreement_after_timing
    if after is not None:
        stale = [output for output, change in after.changes.items()
                 if change["engine"] <= STALE_ENGINE_CHANGE and change["reference"] > STALE_REFERENCE_CHANGE]  # fmt: skip
        if stale:
            clipped = " (or, at int8, inputs clipped to the calibration range)" if name == "int8" else ""
            reasons.append(f"after the timed run, the engine answered different inputs with the outputs it gave the timed ones "
                           f"({', '.join(stale)}) while PyTorch's changed: stale or constant outputs{clipped}")  # fmt: skip
        if after.worst.has_nan_or_inf:
            reasons.append("after the timed run, outputs for different inputs contain NaN or Inf")
        else:
            reasons += _disagreement(after.worst, p, name, "after the timed run, outputs for different inputs disagree with PyTorch fp32")
    if result.dataset_agreement is not None:  # the share within tolerance is the measured batch's check
        reasons += _disagreement(result.dataset_agreement.worst, p, name, "over the dataset, outputs disagree with PyTorch fp32",
                                 share=False, top1=_class_top1(result))  # fmt: skip
    return reasons


def _class_top1(result: Result) -> float | None:
    """Over a labelled dataset the first output is read as class scores (``measure.accuracy``): its top-1
    agreement with PyTorch. None for an unlabelled set (an embedding's largest dimension is no class)."""
    if result.accuracy is None:
        return None
    first = next(iter(result.dataset_agreement.outputs.values()), {})
    return first.get("top1_agreement")


def _disagreement(worst: AgreementFigures, p: Precision, name: str, what: str, share: bool = True, top1: float | None = None) -> list[str]:
    """One reason listing every threshold of precision ``p`` (called ``name``) the figures miss, or none."""
    if worst.has_nan_or_inf:
        return [f"{what}: outputs contain NaN or Inf"]
    missed = []
    if worst.cosine_similarity < p.cosine_floor:
        missed.append(f"cosine similarity {worst.cosine_similarity:.6f} < {p.cosine_floor}")
    if worst.relative_l2_error > p.relative_l2_ceiling:
        missed.append(f"relative L2 error {worst.relative_l2_error:.4f} > {p.relative_l2_ceiling:.4f}")
    close = worst.share_within_tolerance  # None in results written before it was measured
    if share and close is not None and close < p.close_share_floor:
        missed.append(f"{close:.1%} of elements within {p.tolerance:g} x RMS of the reference < {p.close_share_floor:.0%}")
    if top1 is not None and top1 < p.top1_floor:
        missed.append(f"top-1 agreement {top1:.1%} < {p.top1_floor:.1%}")
    return [f"{what}: {', '.join(missed)} for {name}"] if missed else []


def _trace_warnings(result: Result) -> list[str]:
    """Engines that run the ONNX graph inherit what its trace warned about; PyTorch engines run the module."""
    traced = result.export.tracer_warnings if result.export else ()
    if not traced or result.runtime == "pytorch":
        return []
    count = f"{len(traced)} TracerWarning{'s' if len(traced) > 1 else ''}"
    return [f"the ONNX export traced with {count} (data-dependent control flow may be frozen): {traced[0]}"]
