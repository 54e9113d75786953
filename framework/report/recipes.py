"""What the precision search tried (``sweep.precision_search``), as a table and as a path in the accuracy figure.

Each step is a measured result kept under ``<experiment>/search/<step>/`` (status ``search``): its recipe, the
nodes it kept in float, its agreement on the calibration set (what the search steered by) and on held-out data
(the worst of the timed input, the varied inputs and the model's dataset: what judged it), its median, and its
speedup against the same engine's fp32 result at the same batch size (ratio of medians). The chosen step is
the one the experiment was then measured fully with.
"""

from __future__ import annotations

import sys
from pathlib import Path

from framework.results.record import Result
from framework.results.store import SEARCH_DIR, SUMMARY, load_result
from framework.results.tables import sort_key
from framework.sweep.precision_search import TIE
from framework.sweep.recipe_candidates import OVERLAP

NONE_VALID = "no step was valid: the first recipe's result stands"
NAMES_SHOWN = 3  # excluded node names written out per row; the rest are counted


def load_search_steps(model_dir: Path) -> list[Result]:
    """Every measured search step under ``model_dir``, in experiment order, then step order."""
    steps = []
    for path in sorted(Path(model_dir).rglob(f"{SEARCH_DIR}/*/{SUMMARY}")):
        if "cache" in path.relative_to(model_dir).parts:
            continue
        try:
            steps.append(load_result(path.parent))
        except Exception:  # a damaged step file: the table is written without it
            continue
    return sorted(steps, key=lambda r: (sort_key(r), (r.recipe_search or {}).get("step", 0)))


def held_out_cosine(result: Result) -> float | None:
    """The worst cosine similarity on data the search did not steer by: timed input, varied inputs, dataset."""
    found = [a.worst.cosine_similarity for a in (result.agreement, result.agreement_after_timing, result.dataset_agreement) if a is not None]
    return min(found) if found else None


def _fp32_median(results: list[Result], step: Result) -> float | None:
    e = step.experiment
    for r in results:
        x = r.experiment
        if (x.engine, x.shape_tag, x.batch_size, x.precision) == (e.engine, e.shape_tag, e.batch_size, "fp32") and r.is_valid and r.headline:
            return r.headline.median_ms
    return None


def _excluded_text(excluded: list[str]) -> str:
    if not excluded:
        return "none"
    shown = ", ".join(f"`{n}`" for n in excluded[:NAMES_SHOWN])
    return f"{len(excluded)}: {shown}" + (f" and {len(excluded) - NAMES_SHOWN} more" if len(excluded) > NAMES_SHOWN else "")


def step_row(step: Result, fp32_ms: float | None, chosen: int | None) -> list[str]:
    meta, head = step.recipe_search or {}, step.headline
    calibration, held_out = meta.get("calibration"), held_out_cosine(step)
    if step.validity == "valid":
        verdict = "valid"
    elif step.validity == "invalid":
        verdict = "INVALID"
    else:
        verdict = (step.reason or step.status).replace("|", "/")[:120]
    speedup = f"{fp32_ms / head.median_ms:.2f}x" if fp32_ms and head else "n/a"
    return [str(meta.get("step", "?")) + (" (chosen)" if meta.get("step") == chosen else ""), meta.get("label", "?"), meta.get("stage", "?"),
            _excluded_text(meta.get("recipe", {}).get("excluded", [])),
            f"{calibration['cosine_similarity']:.5f}" if calibration else "n/a", f"{held_out:.5f}" if held_out is not None else "n/a",
            verdict, f"{head.median_ms:.4g}" if head else "n/a", speedup]  # fmt: skip


HEADER = ["step", "recipe", "stage", "nodes kept in float", "cosine, calibration", "cosine, held-out", "result", "median ms", "speedup vs fp32"]


def _budget_note(search: dict) -> str:
    """What ``--search-budget`` left undone: candidates built but not measured, recipes not built, fallback unfinished."""
    skipped, rounds = search.get("not_measured") or [], search.get("rounds", [])
    unbuilt = [label for r in rounds for label in r.get("not_built", [])]
    note = f"; not measured, --search-budget spent (failed on the calibration set): {'; '.join(skipped)}" if skipped else ""
    if any(r.get("complete") is False for r in rounds):
        note += "; candidate phase cut short by --search-budget" + (f" (not built: {'; '.join(unbuilt)})" if unbuilt else "")
    return note


def search_section(steps: list[Result], results: list[Result], shape: str) -> list[str]:
    """The report's section for one shape: per searched experiment, its steps in the order tried."""
    lines: list[str] = []
    searched = {s.experiment for s in steps} | {r.experiment for r in results if r.recipe_search}  # a failed search may have no step
    for experiment in sorted({e for e in searched if e.shape_tag == shape}, key=lambda e: (e.engine, e.precision, e.batch_size)):
        final = next((r for r in results if r.experiment == experiment), None)
        if final is None or not final.recipe_search:  # steps an earlier search left: this result did not search (--no-precision-search)
            continue
        search = final.recipe_search
        chosen = search.get("step")
        rows = [s for s in steps if s.experiment == experiment]
        fp32_ms = _fp32_median(results, final)
        fully = f", measured fully: {final.headline.median_ms:.4g} ms" if final and final.headline else ""
        outcome = (f"chosen: step {chosen}, {search.get('chosen')}{fully} (the fastest valid step in the short runs; among those within "
                   f"{TIE:.0%} of it, the one with the fewest nodes kept in float)" if chosen is not None else NONE_VALID)  # fmt: skip
        overlap = search.get("calibration_overlaps")
        overlap = f" Warning: {overlap if isinstance(overlap, str) else OVERLAP}." if overlap else ""
        outcome += _budget_note(search) + (f"; the search failed: {search['error']}" if search.get("error") else "")
        lines += [f"### Precision search: {experiment.engine} {experiment.precision}, batch {experiment.batch_size}", "",
                  f"The first recipe failed the floor; {len(rows)} steps measured in {search.get('spent_s', '?')} s of "
                  f"--search-budget {search.get('budget_s', '?')} s; {outcome}. Calibration: the agreement the search steered by; "
                  "held-out: the worst over the timed input, the varied inputs and the model's dataset, which judged each step. "
                  f"The accuracy-vs-latency figure draws the steps as a numbered path ending at the chosen recipe.{overlap}", "",
                  "| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]  # fmt: skip
        lines += ["| " + " | ".join(step_row(s, fp32_ms, chosen)) + " |" for s in rows]
        lines.append("")
    return lines


def steps_markdown(model_dir: Path) -> str:
    """Every search's table of one model (for the terminal and scripts): ``python -m framework.report.recipes DIR``."""
    from framework.results.store import load_results

    steps, results = load_search_steps(model_dir), load_results(model_dir)
    shapes = sorted({s.experiment.shape_tag for s in steps} | {r.experiment.shape_tag for r in results if r.recipe_search})
    return "\n".join(line for shape in shapes for line in search_section(steps, results, shape))


def draw_search_path(ax, steps: list[Result], final: Result, quality) -> list[tuple[float, float]]:
    """The steps of ``final``'s search as a path in the order tried, ending at ``final`` (the chosen recipe
    measured fully), at their host-clock medians as the figure draws them; ``quality(result)`` is the y value
    as the axes draw it. Returns the points drawn."""
    from framework.report.style import result_color

    drawn = [s for s in steps if s.latency is not None and quality(s) is not None]
    if not drawn or final.latency is None or quality(final) is None:
        return []
    points = [(s.latency.median_ms, quality(s)) for s in drawn] + [(final.latency.median_ms, quality(final))]
    xs, ys = zip(*points)
    color = result_color(final)
    ax.plot(xs, ys, color=color, lw=0.9, alpha=0.55, ls="-", zorder=2, marker=".", markersize=5)
    for step, (x, y) in zip(drawn, points):
        ax.annotate(str(step.recipe_search.get("step", "")), (x, y), textcoords="offset points", xytext=(3, -9), fontsize=6, color=color)
    return points


def main(argv: list[str]) -> int:
    """``python -m framework.report.recipes DIR``: the tables, or why there are none (exit 2: no such folder)."""
    if len(argv) != 1 or not Path(argv[0]).is_dir():
        print(f"usage: python -m framework.report.recipes MODEL_RESULTS_DIR ({argv[0] if argv else 'none given'}: not a folder)", file=sys.stderr)
        return 2
    text = steps_markdown(Path(argv[0]))
    print(text or f"no precision search under {argv[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
