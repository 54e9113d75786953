"""``--tune``: each engine at its best. For one experiment, try the engine's option space, keep the fastest
valid configuration, and hand it to the sweep to measure fully.

The space is the engine's own (``Engine.tuning_space``: documented options, most promising first, the
defaults first of all). Each configuration is a ``Job`` like any other, run the same way (its own child
process), with a short run length (``SHORT``) and its result kept under ``<experiment>/tuning/<label>/``
with status ``tuning``: the report lists every one (options, median, valid or why not). The fastest valid
one by headline median wins. Compiling and building are done before timing and recorded apart
(``compile_s``, ``build_s``), so they never count as latency; they do spend the budget: a configuration
starts only while the experiment's tuning has spent less than ``--tune-budget`` seconds (the defaults
always run). A rerun keeps the configurations it tried with the same fingerprint, as a sweep keeps results.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from framework.files import safe_component
from framework.results.record import Result
from framework.results.store import TUNING_DIR, read_result, save_result
from framework.settings import MeasureSettings

# A configuration's short measurement: the median to +-2% or 2 s, whichever comes first (at least 5 samples).
SHORT = {"target_ci": 0.02, "min_iterations": 5, "min_duration": 0.2, "max_duration": 2.0}
SHORT_WARMUP = 3  # at most this many warm-up iterations (the adaptive warm-up still waits for the trend to end)
LAST_TRIAL_S = 30.0  # a configuration started near the end of the budget may still take this long


def label(configuration: dict) -> str:
    """How a configuration is named in folders and tables: ``default`` or ``compile=default,cuda_graph=true``."""
    if not configuration:
        return "default"
    return ",".join(f"{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in sorted(configuration.items()))


def short_measure(measure: MeasureSettings, options: dict) -> MeasureSettings:
    """``measure`` with a configuration's options and the short run length (fixed --iterations are kept).
    Accuracy is checked as in the full run: a configuration that changes the outputs must not win."""
    run_length = {} if measure.iterations is not None else {**SHORT, "warmup": min(measure.warmup, SHORT_WARMUP)}
    return dataclasses.replace(measure, engine_options={**measure.engine_options, **options}, **run_length)


@dataclass(frozen=True)
class Tuned:
    """What the search found: the winner's options (to merge into the engine options), and every tried result."""

    options: dict
    tried: tuple[Result, ...]
    tried_labels: tuple[str, ...]  # the configurations tried, as the space names them (``label``)
    not_tried: tuple[str, ...]  # labels the budget left out
    spent_s: float
    budget_s: float

    def summary(self) -> dict:
        """``Result.tuning`` of the full measurement."""
        return {"chosen": label(self.options), "tried": list(self.tried_labels), "not_tried": list(self.not_tried),
                "valid": sum(r.is_usable for r in self.tried), "spent_s": round(self.spent_s, 1), "budget_s": self.budget_s}  # fmt: skip


def fastest_valid(tried: list[Result]) -> Result | None:
    """The valid tried configuration with the smallest headline median; on a tie, the one tried first."""
    usable = [r for r in tried if r.is_usable and r.headline is not None]
    return min(usable, key=lambda r: r.headline.median_ms) if usable else None


def as_tuning(result: Result, name: str) -> Result:
    """A tried configuration's result as kept: status ``tuning``, its label in ``tuning``; a failure's status
    stays in its reason."""
    if result.status == "ok":
        return result.ended("tuning", result.reason, tuning={"label": name})
    return result.ended("tuning", f"{result.status}: {result.reason}", validity=None, tuning={"label": name})


def tune(space: list[dict], folder: Path, budget_s: float, run: Callable[[dict, Path, float | None], Result],
         fingerprint: Callable[[dict], str], report: Callable[[str], None],
         expected_s: Callable[[dict], float] = lambda _: 0.0) -> Tuned:  # fmt: skip
    """Try ``space`` in order within ``budget_s``: ``run(options, result_dir, timeout_s)`` measures one
    configuration (short; ``timeout_s`` None for the defaults, which always run in full, else what is left of
    the budget, at least ``LAST_TRIAL_S``: a compile that would overrun it is stopped and recorded as failed),
    ``fingerprint(options)`` names its settings for resume; one whose ``expected_s`` exceeds what is left is
    not started. Returns the fastest valid one ({} when none was valid: the defaults)."""
    started, tried, tried_options, not_tried = time.monotonic(), [], [], []
    for index, options in enumerate(space):
        name = label(options)
        target = folder / TUNING_DIR / safe_component(name)
        left = budget_s - (time.monotonic() - started)
        if index and (left <= 0 or expected_s(options) > left):
            not_tried.append(name)
            report(f"tuning {index + 1}/{len(space)} {name}: not tried, {max(left, 0):.0f} s of --tune-budget left"
                   + (f" (it takes about {expected_s(options):.0f} s)" if expected_s(options) else ""))  # fmt: skip
            continue
        result = _kept(target, fingerprint(options))
        if result is None:
            result = as_tuning(run(options, target, None if index == 0 else max(left, LAST_TRIAL_S)), name)
            save_result(target, result)
        tried.append(result)
        tried_options.append(options)
        report(f"tuning {index + 1}/{len(space)} {name}: {_outcome(result)}")
    best = fastest_valid(tried)
    chosen = tried_options[tried.index(best)] if best else {}
    labels = tuple(label(o) for o in tried_options)
    return Tuned(dict(chosen), tuple(tried), labels, tuple(not_tried), time.monotonic() - started, budget_s)


def _kept(target: Path, fingerprint: str) -> Result | None:
    """A configuration an earlier run tried with the same settings (its failure too: it would fail again)."""
    previous = read_result(target)
    return previous if previous is not None and previous.status == "tuning" and previous.fingerprint == fingerprint else None


def _outcome(result: Result) -> str:
    if result.is_usable:
        return f"{result.headline.median_ms:.4g} ms" + (f" (compiled in {result.compile_s:.1f} s)" if result.compile_s else "")
    if result.validity == "invalid":
        return "invalid: " + "; ".join(result.invalid_reasons)
    return result.reason or result.status
