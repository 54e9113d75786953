"""Every result is labelled ``valid`` or ``invalid`` with the reasons, and carries its warnings separately.

Invalid (kept on disk, shown as invalid, never drawn as a winner, never used by ``compare``):
  fewer samples or a shorter timed region than required; outputs with NaN/Inf; outputs that disagree with
  the PyTorch fp32 reference beyond the precision's cosine-similarity floor, before the timed run or, on
  different inputs, after it (stale or constant outputs).
Warnings: coefficient of variation above 10% (pyperf's rule: the figure is unstable); host-bound: issuing an
iteration on the host takes at least 80% of its device time. trtexec warns at 100%, but it does not
synchronise between iterations; here every iteration is synchronised, so the device time of a launch-bound
run is the enqueue time plus the tail of the last kernel and never quite reaches 100%. A device-bound run
enqueues in a small fraction of its device time (ResNet-50 batch 256: a few percent). CUDA graphs are the
remedy. Only engines whose call returns before the GPU finishes are judged (ONNX Runtime's Run blocks).
"""

from __future__ import annotations

import statistics

from framework.stats import CV_WARNING

# Cosine similarity to the fp32 reference below which outputs are called wrong, per precision.
COSINE_FLOOR = {"fp32": 0.9999, "fp16": 0.999, "int8": 0.99}
HOST_BOUND_SHARE = 0.8


def label(record: dict, required_iterations: int, required_duration_s: float, enqueue_ns: tuple[int, ...] | None) -> None:
    """Add ``validity``, ``invalid_reasons`` and ``warnings`` to a measured record, in place."""
    reasons, warnings = [], []
    latency = record["latency"]
    if latency["n"] < required_iterations:
        reasons.append(f"{latency['n']} samples, {required_iterations} required")
    if latency["timed_region_s"] + 1e-9 < required_duration_s:
        reasons.append(f"timed region {latency['timed_region_s']:.3f} s, {required_duration_s} s required")
    floor = COSINE_FLOOR.get(record["precision"], 0.99)
    agreement = record["agreement"]["worst"]
    if agreement["has_nan_or_inf"]:
        reasons.append("outputs contain NaN or Inf")
    elif agreement["cosine_similarity"] < floor:
        reasons.append(
            f"outputs disagree with PyTorch fp32: cosine similarity {agreement['cosine_similarity']:.6f} < {floor} for {record['precision']}"
        )
    after = record.get("agreement_after_timing", {}).get("worst")
    if not reasons and after and (after["has_nan_or_inf"] or after["cosine_similarity"] < floor):  # right before, wrong after
        reasons.append(
            f"after the timed run, outputs for different inputs disagree with PyTorch (cosine similarity "
            f"{after['cosine_similarity']:.6f}): stale or constant outputs"
        )
    for key, name in (("latency", "latency"), ("latency_model", "latency-model")):
        if key in record and record[key]["cv"] > CV_WARNING:
            warnings.append(f"unstable {name}: coefficient of variation {record[key]['cv']:.0%} > {CV_WARNING:.0%}")
    if enqueue_ns and "latency_model" in record:
        enqueue_ms = statistics.median(enqueue_ns) / 1e6
        record["enqueue_median_ms"] = enqueue_ms
        if enqueue_ms >= HOST_BOUND_SHARE * record["latency_model"]["median_ms"]:
            warnings.append(
                f"host-bound: issuing an iteration takes {enqueue_ms:.3f} ms on the host, the device runs it in "
                f"{record['latency_model']['median_ms']:.3f} ms; CUDA graphs (--option cuda_graph=true) remove the launch cost"
            )
    record["validity"] = "invalid" if reasons else "valid"
    record["invalid_reasons"] = reasons
    record["warnings"] = warnings
