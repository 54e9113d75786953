"""How far an engine's outputs are from the PyTorch fp32 reference, per output and worst over outputs."""

from __future__ import annotations

import numpy as np

DEFAULT_RTOL = 1e-3
DEFAULT_ATOL = 1e-4


def compare_outputs(
    reference: dict[str, np.ndarray], candidate: dict[str, np.ndarray], rtol: float = DEFAULT_RTOL, atol: float = DEFAULT_ATOL
) -> dict:
    """Max/mean absolute error, share of elements ``isclose``, cosine similarity; NaN/Inf flagged, not averaged."""
    per_output = {}
    for name, ref in reference.items():
        if name not in candidate:
            raise ValueError(f"engine returned no output {name!r}; it returned {sorted(candidate)}")
        got = candidate[name]
        if got.shape != ref.shape:
            raise ValueError(f"output {name!r} has shape {got.shape}, the PyTorch reference {ref.shape}")
        a = ref.astype(np.float64).ravel()
        b = got.astype(np.float64).ravel()
        finite = bool(np.isfinite(b).all())
        diff = np.abs(a - b)
        norm = np.linalg.norm(a) * np.linalg.norm(b)
        per_output[name] = {
            "max_abs_error": float(diff.max()) if diff.size else 0.0,
            "mean_abs_error": float(diff.mean()) if diff.size else 0.0,
            "share_close": float(np.isclose(b, a, rtol=rtol, atol=atol).mean()) if diff.size else 1.0,
            "cosine_similarity": float(a @ b / norm) if norm > 0 else float(np.array_equal(a, b)),
            "has_nan_or_inf": not finite,
        }
    worst = {
        "max_abs_error": max(o["max_abs_error"] for o in per_output.values()),
        "mean_abs_error": max(o["mean_abs_error"] for o in per_output.values()),
        "share_close": min(o["share_close"] for o in per_output.values()),
        "cosine_similarity": min(o["cosine_similarity"] for o in per_output.values()),
        "has_nan_or_inf": any(o["has_nan_or_inf"] for o in per_output.values()),
        "rtol": rtol,
        "atol": atol,
    }
    worst["all_close"] = worst["share_close"] == 1.0 and not worst["has_nan_or_inf"]
    return {"worst": worst, "outputs": per_output}
