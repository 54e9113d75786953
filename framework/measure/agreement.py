"""How far an engine's outputs are from the PyTorch fp32 reference, per output and worst over outputs."""

from __future__ import annotations

import numpy as np

from framework.precisions import precision as precision_named
from framework.results.record import Agreement

DEFAULT_RTOL = 1e-3
DEFAULT_ATOL = 1e-4


def compare_outputs(
    reference: dict[str, np.ndarray],
    candidate: dict[str, np.ndarray],
    precision: str = "fp32",
    rtol: float = DEFAULT_RTOL,
    atol: float = DEFAULT_ATOL,
) -> dict:
    """Max/mean absolute error, share of elements ``isclose``, share within the precision's tolerance
    (|got - ref| <= tolerance x RMS(ref), ``precisions.py``), relative L2 error, cosine similarity;
    NaN/Inf flagged, not averaged."""
    tolerance = precision_named(precision).tolerance
    per_output = {}
    for name, ref in reference.items():
        if name not in candidate:
            raise ValueError(f"engine returned no output {name!r}; it returned {sorted(candidate)}")
        got = candidate[name]
        if got.shape != ref.shape:
            raise ValueError(f"output {name!r} has shape {got.shape}, the PyTorch reference {ref.shape}")
        per_output[name] = _figures(ref, got, tolerance, rtol, atol)
        if ref.ndim == 2 and ref.shape[1] >= 2 and not per_output[name]["has_nan_or_inf"]:  # class scores, one row per sample
            per_output[name].update(top_k_agreement(ref, got))
    worst = {
        "max_abs_error": max(o["max_abs_error"] for o in per_output.values()),
        "mean_abs_error": max(o["mean_abs_error"] for o in per_output.values()),
        "share_close": min(o["share_close"] for o in per_output.values()),
        "cosine_similarity": min(o["cosine_similarity"] for o in per_output.values()),
        "relative_l2_error": max(o["relative_l2_error"] for o in per_output.values()),
        "has_nan_or_inf": any(o["has_nan_or_inf"] for o in per_output.values()),
        "rtol": rtol,
        "atol": atol,
        "share_within_tolerance": min(o["share_within_tolerance"] for o in per_output.values()),
        "tolerance": tolerance,
    }
    worst["all_close"] = worst["share_close"] == 1.0 and not worst["has_nan_or_inf"]
    agreements = [o["top1_agreement"] for o in per_output.values() if "top1_agreement" in o]
    worst["top1_agreement"] = min(agreements) if agreements else None
    return {"worst": worst, "outputs": per_output}


def _figures(ref: np.ndarray, got: np.ndarray, tolerance: float, rtol: float, atol: float) -> dict:
    a = ref.astype(np.float64).ravel()
    b = got.astype(np.float64).ravel()
    diff = np.abs(a - b)
    norm = np.linalg.norm(a) * np.linalg.norm(b)
    ref_norm = float(np.linalg.norm(a))
    rms = ref_norm / np.sqrt(a.size) if a.size else 0.0
    return {
        "max_abs_error": float(diff.max()) if diff.size else 0.0,
        "mean_abs_error": float(diff.mean()) if diff.size else 0.0,
        "relative_l2_error": float(np.linalg.norm(a - b) / ref_norm) if ref_norm > 0 else float(np.linalg.norm(b)),
        "share_close": float(np.isclose(b, a, rtol=rtol, atol=atol).mean()) if diff.size else 1.0,
        "share_within_tolerance": float((diff <= tolerance * rms).mean()) if diff.size else 1.0,  # NaN is never within
        "cosine_similarity": float(a @ b / norm) if norm > 0 else float(np.array_equal(a, b)),
        "has_nan_or_inf": not bool(np.isfinite(b).all()),
    }


def top_k_agreement(reference: np.ndarray, candidate: np.ndarray, k: int = 10) -> dict:
    """For class scores [samples, classes]: the share of samples whose top class is the same, and the seeds'
    top-10 table. Row r (rank 1..k of the reference's ordering): the mean absolute error of the score at the
    class the reference ranks r-th, and the share of samples whose r-th class differs between the two."""
    k = min(k, reference.shape[1])
    ref_order = np.argsort(-reference, axis=1, kind="stable")[:, :k]
    cand_order = np.argsort(-candidate, axis=1, kind="stable")[:, :k]
    ref_scores = np.take_along_axis(reference.astype(np.float64), ref_order, axis=1)
    cand_scores = np.take_along_axis(candidate.astype(np.float64), ref_order, axis=1)
    return {
        "top1_agreement": float((ref_order[:, 0] == cand_order[:, 0]).mean()),
        "top_k": [
            {"rank": r + 1, "mean_abs_error": float(np.abs(ref_scores[:, r] - cand_scores[:, r]).mean()),
             "disagreement": float((ref_order[:, r] != cand_order[:, r]).mean())}
            for r in range(k)
        ],
    }  # fmt: skip


def output_changes(
    before: dict[str, np.ndarray], after: dict[str, np.ndarray], reference_before: dict[str, np.ndarray], reference_after: dict[str, np.ndarray]
) -> dict:
    """Per output, how much the engine's answer changed between two inputs (``before``: the timed inputs,
    ``after``: the varied ones) and how much PyTorch's did, each as ||after - before|| / ||before||: an
    engine that does not change while PyTorch does answers with stale or constant outputs, at any precision."""
    return {name: {"engine": _relative_change(before[name], after[name]), "reference": _relative_change(ref, reference_after[name])}
            for name, ref in reference_before.items() if name in before and name in after}  # fmt: skip


def _relative_change(before: np.ndarray, after: np.ndarray) -> float:
    if before.shape != after.shape:
        return 1.0
    a, b = before.astype(np.float64).ravel(), after.astype(np.float64).ravel()
    if np.array_equal(a, b, equal_nan=True):
        return 0.0
    change, size = float(np.linalg.norm(b - a)), float(np.linalg.norm(a))
    return change / size if size > 0 else change


def agreement(reference: dict[str, np.ndarray], candidate: dict[str, np.ndarray], precision: str = "fp32", changes: dict | None = None) -> Agreement:
    """``compare_outputs`` as a typed record; ``changes`` (``output_changes``) where the stale check applies."""
    return Agreement.from_dict({**compare_outputs(reference, candidate, precision), "changes": changes or {}})
