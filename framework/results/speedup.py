"""What each configuration buys over a baseline: the ratio of medians, baseline / row, with its 99% interval.

The baseline is one engine and precision (``--baseline ENGINE:PRECISION``); by default PyTorch fp32 eager on
the row's own device kind: ``pytorch-cuda:fp32`` for GPU rows, ``pytorch-cpu:fp32`` for CPU rows. It is
matched on model, shape and batch size. "Eager" means the engine's default options: with ``--tune`` the
baseline row is the tried configuration with default options, not the tuned winner (a tuned PyTorch is
itself a result worth comparing against eager).

The latency compared is each row's headline (device time for GPU engines, host clock otherwise). The
interval is ``compare``'s percentile bootstrap of the same ratio: over per-process medians when both rows
were measured with ``--repeats``, else over the samples (then it says how precisely one process measured).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from framework.errors import DeployBenchError
from framework.results.compare import bootstrap_ratio_ci
from framework.results.record import Result, options_text

DEFAULT_BASELINES = {"cuda": ("pytorch-cuda", "fp32"), "cpu": ("pytorch-cpu", "fp32")}


@dataclass(frozen=True)
class Speedup:
    baseline: str  # "pytorch-cuda fp32"
    ratio: float  # baseline median / row median: > 1 is faster than the baseline
    ci_low: float
    ci_high: float

    def text(self) -> str:
        return f"{ratio_text(self.ratio)}x [{ratio_text(self.ci_low)}, {ratio_text(self.ci_high)}]"


def ratio_text(value: float) -> str:
    """Three significant figures, trailing zeros kept, no exponent down to 0.001: 1,843, 7.89, 1.00, 0.00172."""
    if not math.isfinite(value) or value == 0 or abs(value) < 0.001:
        return f"{value:.2e}" if value else "0.00"
    return f"{value:,.{max(0, 2 - math.floor(math.log10(abs(value))))}f}"


def parse_baseline(text: str | None) -> tuple[str, str] | None:
    """``ENGINE:PRECISION`` -> (engine, precision); None keeps the per-device default."""
    if text is None:
        return None
    from framework.engines import ENGINES
    from framework.precisions import PRECISIONS

    engine, _, precision = text.partition(":")
    if engine not in ENGINES or precision not in PRECISIONS:
        raise DeployBenchError(f"--baseline {text!r}: expected ENGINE:PRECISION with ENGINE one of {', '.join(ENGINES)} "
                               f"and PRECISION one of {', '.join(PRECISIONS)}, e.g. pytorch-cuda:fp32")  # fmt: skip
    return engine, precision


def is_default_configuration(result: Result) -> bool:
    """Measured as the sweep was told, no option chosen by ``--tune``: what "eager" means here. (Options the
    user set for the whole sweep, e.g. ``--threads``, are part of it; the speedup names them.)"""
    if result.status == "tuning":
        return (result.tuning or {}).get("label") == "default"
    return result.tuning is None or result.tuning.get("chosen") == "default"


def describe(result: Result) -> str:
    """``pytorch-cuda fp32 (default options)`` or ``pytorch-cpu fp32 (threads=1)``."""
    e = result.experiment
    return f"{e.engine}{e.on} {e.precision} ({options_text(result.configuration) or 'default options'})"


def baseline_for(result: Result, candidates: list[Result], baseline: tuple[str, str] | None = None) -> Result | None:
    """The valid baseline row for ``result`` among ``candidates`` (finished results and tried configurations)."""
    engine, precision = baseline or DEFAULT_BASELINES.get(result.device, DEFAULT_BASELINES["cpu"])
    e = result.experiment
    matches = [c for c in candidates if c.is_usable and c.experiment.engine == engine and c.experiment.precision == precision
               and (c.experiment.model, c.experiment.shape_tag, c.experiment.batch_size) == (e.model, e.shape_tag, e.batch_size)
               and _same_kind(c, e) and is_default_configuration(c)]  # fmt: skip
    # with --devices, the baseline on the same GPU kind; then a full measurement first
    matches.sort(key=lambda c: (c.experiment.device_kind != e.device_kind, c.status != "ok", -(c.headline.n if c.headline else 0)))
    return matches[0] if matches else None


def _same_kind(candidate: Result, experiment) -> bool:
    """A GPU baseline on the row's GPU kind only (a GPU result without a kind, from a run without --devices, ran
    on a GPU of unknown kind); a CPU baseline (``--baseline onnxruntime-cpu:fp32``) has no kind and serves all."""
    kind = candidate.experiment.device_kind
    return kind == experiment.device_kind or (kind is None and candidate.device != "cuda")


def speedup(result: Result, base: Result) -> Speedup | None:
    """``base``'s median over ``result``'s, with its 99% bootstrap interval; None when either has no samples."""
    if not result.is_usable or result.headline is None or base.headline is None:
        return None
    name = describe(base)
    if result is base or (result.experiment == base.experiment and result.configuration == base.configuration and result.status == base.status):
        return Speedup(name, 1.0, 1.0, 1.0)  # the baseline itself: exactly 1, not a bootstrap of itself
    a, b = _values(result, base)
    if a.size == 0 or b.size == 0 or np.any(a <= 0) or np.any(b <= 0):
        return None
    low, high = bootstrap_ratio_ci(a, b)
    return Speedup(name, float(np.median(b) / np.median(a)), low, high)


def _values(result: Result, base: Result) -> tuple[np.ndarray, np.ndarray]:
    """Per-process medians when both have them (``--repeats``), else the headline samples (ms)."""
    pa, pb = result.headline_process_medians(), base.headline_process_medians()
    if pa and pb and len(pa) > 1 and len(pb) > 1:
        return np.asarray(pa, dtype=float), np.asarray(pb, dtype=float)
    return np.asarray(result.headline_samples_ms(), dtype=float), np.asarray(base.headline_samples_ms(), dtype=float)


def speedups(results: list[Result], candidates: list[Result] | None = None, baseline: tuple[str, str] | None = None) -> dict[int, Speedup]:
    """``id(result) -> Speedup`` for every usable result with a baseline (``candidates`` default: ``results``)."""
    pool = list(results) + list(candidates or [])
    out = {}
    for r in results:
        base = baseline_for(r, pool, baseline)
        s = speedup(r, base) if base is not None else None
        if s is not None:
            out[id(r)] = s
    return out


def missing_baseline(results: list[Result], speedup_of: dict[int, Speedup], baseline: tuple[str, str] | None) -> str | None:
    """Why no row has a speedup, when a named ``--baseline`` was not measured validly: said once, not left to n/a."""
    if baseline is None or speedup_of or not any(r.is_valid for r in results):
        return None
    return (f"No speedups: the baseline {baseline[0]}:{baseline[1]} has no valid result here "
            f"(measure it with --engines {baseline[0]} --precisions {baseline[1]}, or name another --baseline).")  # fmt: skip
