"""``--tune``: each engine at its best. For one experiment, try the engine's option space, keep the fastest
valid configuration, and hand it to the sweep to measure fully.

The space is the engine's own (``Engine.tuning_space``: documented options, most promising first, the
defaults first of all). Each configuration is a ``Job`` like any other, run the same way (its own child
process), with a short run length (``SHORT``) and its result kept under ``<experiment>/tuning/<label>/``
with status ``tuning``: the report lists every one (options, median, valid or why not). The fastest valid
one by headline median wins. The defaults are measured in full, not briefly: they are the baseline the
speedups divide by ("eager"), so they get a full measurement's precision. Compiling and building are done
before timing and recorded apart (``compile_s``, ``build_s``), so they never count as latency; they do
spend the budget: a configuration starts only while at least ``MIN_START_S`` of ``--tune-budget`` is left,
is stopped when the budget is spent, and is not started when the engine expects it to take longer than
what is left (``Engine.expected_tuning_s``). A rerun keeps the configurations measured with the same
fingerprint (failures are tried again), as a sweep keeps results; tries left from other settings go.
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from framework.files import safe_component
from framework.results.record import Result, options_text
from framework.results.store import TUNING_DIR, read_result, save_result
from framework.settings import MeasureSettings

# A configuration's short measurement: the median to +-2% or 2 s, whichever comes first (at least 5 samples).
SHORT = {"target_ci": 0.02, "min_iterations": 5, "min_duration": 0.2, "max_duration": 2.0}
SHORT_WARMUP = 3  # at most this many warm-up iterations (the adaptive warm-up still waits for the trend to end)
MIN_START_S = 5.0  # a configuration is not started with less budget than this left (a process takes seconds to start)


def label(configuration: dict) -> str:
    """How a configuration is named in folders and tables: ``default`` or ``compile=default,cuda_graph=true``."""
    return options_text(configuration, ",", sort=True) or "default"


def short_measure(measure: MeasureSettings, options: dict) -> MeasureSettings:
    """``measure`` with a configuration's options and the short run length (fixed --iterations and the
    defaults, ``options`` {}, keep the full one). Accuracy is checked as in the full run: a configuration that
    changes the outputs must not win."""
    short = measure.iterations is None and options
    run_length = {**SHORT, "warmup": min(measure.warmup, SHORT_WARMUP)} if short else {}
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
         expected_s: Callable[[dict], float] = lambda _: 0.0, keep: bool = True) -> Tuned:  # fmt: skip
    """Try ``space`` in order within ``budget_s``: ``run(options, result_dir, timeout_s)`` measures one
    configuration (``timeout_s`` None for the defaults, which always run, else what is left of the budget),
    ``fingerprint(options)`` names its settings for resume (``keep`` False: measure all again). Returns the
    fastest valid one ({} when none was valid: the defaults)."""
    started, tried, tried_options, not_tried = time.monotonic(), [], [], []
    _remove_stale(folder / TUNING_DIR, {safe_component(label(o)): fingerprint(o) for o in space})
    for index, options in enumerate(space):
        name = label(options)
        target = folder / TUNING_DIR / safe_component(name)
        left = budget_s - (time.monotonic() - started)
        if index and (left < MIN_START_S or expected_s(options) > left):
            not_tried.append(name)
            report(f"tuning {index + 1}/{len(space)} {name}: not tried, {max(left, 0):.0f} s of --tune-budget left"
                   + (f" (it takes about {expected_s(options):.0f} s)" if expected_s(options) else ""))  # fmt: skip
            continue
        result = _kept(target, fingerprint(options)) if keep else None
        note = " (kept from an earlier run)" if result is not None else ""
        if result is None:
            result = as_tuning(run(options, target, None if index == 0 else left), name)
            if index and result.reason.startswith("failed: timed out"):
                result = result.ended("tuning", f"stopped: --tune-budget ran out ({left:.0f} s were left when it started)", validity=None)
            save_result(target, result)
        tried.append(result)
        tried_options.append(options)
        report(f"tuning {index + 1}/{len(space)} {name}: {_outcome(result)}{note}")
    best = fastest_valid(tried)
    chosen = tried_options[tried.index(best)] if best else {}
    labels = tuple(label(o) for o in tried_options)
    return Tuned(dict(chosen), tuple(tried), labels, tuple(not_tried), time.monotonic() - started, budget_s)


def _kept(target: Path, fingerprint: str) -> Result | None:
    """A configuration an earlier run measured with the same settings; a failure is tried again."""
    previous = read_result(target)
    if previous is None or previous.status != "tuning" or previous.fingerprint != fingerprint or previous.validity is None:
        return None
    return previous


def _remove_stale(tuning_dir: Path, current: dict[str, str]) -> None:
    """Tries of this experiment measured with other settings (other fixed options, another model version):
    the experiment's result is measured anew, so they no longer describe it."""
    if not tuning_dir.is_dir():
        return
    for folder in tuning_dir.iterdir():
        previous = read_result(folder) if folder.is_dir() else None
        if folder.is_dir() and (previous is None or current.get(folder.name) != previous.fingerprint):
            shutil.rmtree(folder, ignore_errors=True)


def _outcome(result: Result) -> str:
    if result.is_usable:
        return f"{result.headline.median_ms:.4g} ms" + (f" (compiled in {result.compile_s:.1f} s)" if result.compile_s else "")
    if result.validity == "invalid":
        return "invalid: " + "; ".join(result.invalid_reasons)
    return result.reason or result.status
