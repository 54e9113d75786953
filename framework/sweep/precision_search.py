"""When an int8 or fp16 experiment fails the accuracy floor: find the fastest recipe that passes.

The sweep measures the first recipe as always. When that result is invalid because its outputs disagree with
PyTorch fp32 (not for a short run or stale outputs), and ``--precision-search`` is on (the default), the
search runs for that experiment within ``--search-budget`` seconds:

1. candidates (``sweep.recipe_candidates``, in a child process): every other recipe the engine can run, and
   node-level fallback when none passes, judged on the calibration set only;
2. steps: each candidate graph measured as a short job of the experiment's own kind (as ``--tune`` measures
   a configuration: ``tune.SHORT``), judged like any experiment on the held-out data (the timed input, the
   varied inputs, the model's dataset), kept under ``<experiment>/search/<step>/`` with status ``search``;
3. the fastest valid step is measured in full and becomes the experiment's result, with ``recipe_search``
   saying which recipe, which nodes stayed in float, and what the search tried.

The first recipe's own measurement is step 0. A step that passed on the calibration set is always measured;
the others only while budget is left. A rerun keeps steps measured with the same settings (their fingerprint
names the step's graph file, whose name is a hash of the fp32 graph, the calibration data, the recipe and the
library versions), and the cached plan, so it chooses the same recipe without measuring again.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from framework.artifacts.cache import settings_hash
from framework.files import safe_component
from framework.results.record import Result
from framework.results.store import SEARCH_DIR, read_result, save_result
from framework.sweep.job import Job
from framework.sweep.recipe_candidates import MARGINS, OVERLAP, SearchRequest, candidates_in_child
from framework.sweep.tune import SHORT, SHORT_WARMUP

SEARCHED_PRECISIONS = ("int8", "fp16")
MIN_ROUND_S = 10.0  # a second round starts only with this much of the budget left
TIE = SHORT["target_ci"] * 2  # medians of two short runs closer than this are not told apart


def needs_search(result: Result, enabled: bool, repeats: int, needs_onnx: bool) -> bool:
    """Only a measured result whose outputs disagree with PyTorch: a short run or stale outputs are not the
    recipe's fault, and a search per process of ``--repeats`` would measure each step K times."""
    return (enabled and repeats == 1 and needs_onnx and result.experiment.precision in SEARCHED_PRECISIONS and result.status == "ok"
            and result.validity == "invalid" and any("disagree with PyTorch" in r for r in result.invalid_reasons))  # fmt: skip


def searched_without_search(kept: Result, enabled: bool, budget_s: float | None = None) -> bool:
    """A result whose graph the search chose, kept from a run with the search on, is not what a run with
    ``--no-precision-search`` measures: the first recipe is measured again. Nor is one whose search a smaller
    ``--search-budget`` cut short (candidates not measured, ranking unfinished) what a larger budget finds."""
    search = kept.recipe_search or {}
    if not search.get("chosen"):
        return False
    cut_short = bool(search.get("not_measured")) or any(r.get("complete") is False for r in search.get("rounds", []))
    return not enabled or (cut_short and budget_s is not None and budget_s > search.get("budget_s", 0))


def search(first: Result, job: Job, request: SearchRequest, run_job: Callable[[Job, float | None], Result], isolate: bool,
           report: Callable[[str], None], keep: bool = True) -> Result:  # fmt: skip
    """Search, measure the steps, and return the experiment's result: the fastest valid step measured fully,
    or ``first`` (still invalid) with the search's account when no step was valid. A first round keeps 10%
    of the allowed error in reserve on the calibration set; when none of its steps is valid on held-out data,
    a second round asks for half and falls back node by node from the most accurate recipe."""
    started, name = time.monotonic(), first.experiment.name
    deadline = started + request.budget_s
    report(f"{name}: the first {first.experiment.precision} recipe is invalid; searching for one that passes "
           f"(--search-budget {request.budget_s:g} s)")  # fmt: skip
    steps: dict[str, Result] = {}  # graph file -> its measured step, in the order tried
    summary = {"budget_s": request.budget_s, "first_invalid": list(first.invalid_reasons), "rounds": []}
    for index, margin in enumerate(MARGINS):
        left = deadline - time.monotonic()
        if index and (left < MIN_ROUND_S or _fastest_valid(list(steps.values())) is not None):
            break
        plan = candidates_in_child(dataclasses.replace(request, margin=margin, fallback=index > 0, budget_s=left), max(left, 60.0) + 60.0, isolate)
        if "error" in plan:
            report(f"{name}: precision search failed: {plan['error']}")
            summary["error"] = plan["error"]
            break
        if plan.get("calibration_apart") is False and not summary.get("calibration_overlaps"):
            summary["calibration_overlaps"] = plan.get("calibration_overlap") or OVERLAP
            report(f"{name}: warning: {summary['calibration_overlaps']}")
        if plan.get("reused"):
            report(f"{name}: candidate recipes{' and sensitivity ranking' if plan.get('ranking') else ''} reused from the cache (margin {margin:g})")
        elif plan.get("cache_note"):
            report(f"{name}: {plan['cache_note']}: candidates built and judged again (margin {margin:g})")
        summary["rounds"].append({"margin": margin, "planned": len(plan["steps"]), "plan_reused": bool(plan.get("reused")),
                                  "complete": plan["complete"], "not_built": plan.get("not_built", []), "ranking": _ranking_note(plan)})  # fmt: skip
        if not plan["complete"]:
            report(f"{name}: --search-budget spent before every candidate was built and judged ({len(plan.get('not_built', []))} recipes not built); "
                   "a larger budget searches on")  # fmt: skip
        summary.setdefault("not_measured", []).extend(_measure_steps(first, job, plan["steps"], steps, run_job, deadline, report, keep))
    _prune(job.result_dir / SEARCH_DIR, steps.values())
    summary.update(steps=len(steps), spent_s=round(time.monotonic() - started, 1))
    best = _fastest_valid(list(steps.values()))
    if best is None:
        report(f"{name}: no recipe tried passed; the first recipe's result stands (invalid)")
        return _saved(job, first, {**summary, "chosen": None})
    step = best.recipe_search
    chosen = dataclasses.replace(job, graphs={**job.graphs, request.graph: Path(step["graph"])}, run_id=uuid.uuid4().hex)
    report(f"{name}: chosen {step['label']} ({best.headline.median_ms:.4g} ms in its short run); measuring it fully")
    result = run_job(chosen, None)
    summary.update(chosen=step["label"], step=step["step"], recipe=step["recipe"], excluded=step["recipe"]["excluded"],
                   spent_s=round(time.monotonic() - started, 1))  # fmt: skip
    return _saved(chosen, result, summary)


def _saved(job: Job, result: Result, summary: dict) -> Result:
    """The experiment's result with the search's account; one the search chose says so where tables show it (a warning)."""
    if summary.get("chosen"):  # its label counts the nodes kept in float ("-2 nodes"); the report's table names them
        note = f"{result.experiment.precision} graph chosen by the precision search (the first recipe failed the floor): {summary['chosen']}"
        result = dataclasses.replace(result, warnings=(*result.warnings, note))
    result = dataclasses.replace(result, recipe_search=summary)
    save_result(job.result_dir, result)
    return result


def _measure_steps(first: Result, job: Job, planned: list[dict], steps: dict[str, Result], run_job, deadline: float, report, keep: bool) -> list[str]:
    """Measure the planned steps not measured yet in this search into ``steps``. Step 0 is the first recipe's
    own measurement; the others are measured briefly, or kept from a run with the same fingerprint. One that
    failed on the calibration set is skipped once the budget is spent: their labels are returned. ``keep`` False
    (``--force``): measure every step again (the cached plan is still used: it depends on the graphs and data,
    not on the machine's speed)."""
    skipped = []
    for step in planned:
        if step["graph"] in steps:
            continue
        meta = {**step, "step": len(steps)}
        target = job.result_dir / SEARCH_DIR / safe_component(f"{meta['step']:02d} {step['label']}")
        if meta["step"] == 0 or step.get("error"):
            result = first.ended("search", first.reason) if meta["step"] == 0 else job.pending_result().ended("search", step["error"])
            result = dataclasses.replace(result, recipe_search=meta)
            save_result(target, result)
        elif deadline - time.monotonic() <= 0 and not step["passed"]:
            report(f"{first.experiment.name}: search candidate {step['label']}: not measured, --search-budget spent (failed on calibration)")
            skipped.append(step["label"])
            continue
        else:
            fingerprint = settings_hash({"experiment": job.fingerprint, "graph": Path(step["graph"]).name, "recipe": step["recipe"]})
            timeout = None if step["passed"] else deadline - time.monotonic()
            result = (_kept(target, fingerprint) if keep else None) or _run_step(job, step, meta, target, fingerprint, run_job, timeout)
        steps[step["graph"]] = result
        if meta["step"]:
            report(f"{first.experiment.name}: search step {meta['step']} {step['label']}: {_outcome(result)}")
    return skipped


def _prune(folder: Path, steps) -> None:
    """Remove step folders an earlier search left (other steps, other numbering): the report tables this search's only."""
    import shutil

    ours = {safe_component(f"{r.recipe_search['step']:02d} {r.recipe_search['label']}") for r in steps}
    for path in folder.iterdir() if folder.is_dir() else ():
        if path.is_dir() and path.name not in ours:
            shutil.rmtree(path, ignore_errors=True)


def _run_step(job: Job, step: dict, meta: dict, target: Path, fingerprint: str, run_job, timeout_s: float | None) -> Result:
    from framework.sweep.plan import graph_of

    measure = job.measure
    if measure.iterations is None:
        measure = dataclasses.replace(measure, **SHORT, warmup=min(measure.warmup, SHORT_WARMUP))
    graph = graph_of(job.experiment.engine, job.experiment.precision)
    step_job = dataclasses.replace(job, graphs={**job.graphs, graph: Path(step["graph"])}, measure=measure, result_dir=target,
                                   fingerprint=fingerprint, run_id=uuid.uuid4().hex, tuning=None)  # fmt: skip
    result = run_job(step_job, timeout_s)
    status_note = "" if result.status == "ok" else f"{result.status}: "
    result = result.ended("search", status_note + result.reason, recipe_search=meta)
    save_result(target, result)
    return result


def _kept(target: Path, fingerprint: str) -> Result | None:
    previous = read_result(target)
    if previous is None or previous.status != "search" or previous.fingerprint != fingerprint or previous.validity is None:
        return None
    return previous


def _fastest_valid(steps: list[Result]) -> Result | None:
    """The valid step with the smallest median; among those within ``TIE`` of it (short runs cannot tell them
    apart), the one with the fewest nodes kept in float, then the one tried first."""
    valid = [r for r in steps if r.validity == "valid" and r.headline is not None and r.recipe_search["step"] > 0]
    if not valid:
        return None
    fastest = min(r.headline.median_ms for r in valid)
    tied = [r for r in valid if r.headline.median_ms <= fastest * (1 + TIE)]
    return min(tied, key=lambda r: (len(r.recipe_search["recipe"]["excluded"]), r.recipe_search["step"]))


def _ranking_note(plan: dict) -> dict | None:
    ranking = plan.get("ranking")
    if not ranking:
        return None
    ranked = [(n, loss) for n, loss in zip(ranking["nodes"], ranking["losses"]) if loss is not None]
    return {"complete": ranking["complete"], "ranked": len(ranked), "top": [[n, round(loss, 6)] for n, loss in ranked[:5]]}


def _outcome(result: Result) -> str:
    if result.validity == "valid":
        return f"valid, {result.headline.median_ms:.4g} ms"
    if result.validity == "invalid":
        return "invalid: " + "; ".join(result.invalid_reasons)[:200]
    return result.reason or result.status


def request_for(job: Job, prepared, settings) -> SearchRequest:
    """The candidate phase's request for ``job``'s experiment (``prepared``: its ``PreparedShape``)."""
    from dataclasses import asdict

    from framework.engines import engine_class
    from framework.sweep.plan import graph_of

    experiment, cls = job.experiment, engine_class(job.experiment.engine)
    graph = graph_of(experiment.engine, experiment.precision)
    return SearchRequest(loader=asdict(prepared.loader), config_path=str(prepared.config.path), shapes=[list(s) for s in prepared.shapes],
                         model_dir=str(job.model_dir), cache_dir=str(prepared.cache_dir), source=str(prepared.graphs["fp32"]),
                         default_graph=str(prepared.graphs[graph]), engine=experiment.engine, device=cls.device, graph=graph,
                         precision=experiment.precision, calibration_samples=settings.calibration_samples,
                         threads=int(job.measure.engine_options.get("threads") or 1), budget_s=settings.search_budget)  # fmt: skip


def searched(result: Result, job: Job, prepared, settings, run_job: Callable[[Job, float | None], Result], report) -> Result:
    """The sweep's hook: ``result`` itself, or what the search made of it (``needs_search``)."""
    from framework.engines import engine_class

    if not needs_search(result, settings.precision_search, settings.repeats, engine_class(job.experiment.engine).needs_onnx):
        return result
    return search(result, job, request_for(job, prepared, settings), run_job, settings.isolate, report, keep=not settings.force)
