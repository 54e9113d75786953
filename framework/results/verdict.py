"""The answer users come for, first: per shape and batch size, each engine at its best, and the winner.

"At its best" is the engine's fastest valid result over its precisions and configurations (with ``--tune``
the configuration the search chose; tried configurations themselves never appear here, only in the tuning
table). The winner is the fastest of those. Speed is the headline median (device time for GPU engines, the
host clock otherwise), so a GPU engine's figure leaves out the copies between host and device: the report
says so. The report opens with these tables (``report.document``); the terminal prints the same ones when a
run ends.
"""

from __future__ import annotations

from collections.abc import Mapping

from framework.results.record import Result, options_text
from framework.results.speedup import Speedup, ratio_text
from framework.results.tables import REPORT, Context, columns, configuration_text, footnoted_table, items_per_s, shapes_of

TERMINAL_COLUMNS = ("engine", "precision", "configuration", "median ms (99% CI)", "items/s", "speedup (99% CI)", "accuracy / agreement")


def best_per_engine(results: list[Result]) -> list[Result]:
    """The fastest valid, fully measured result of each engine among ``results`` (one shape and batch
    size), fastest first."""
    best: dict[tuple, Result] = {}
    for r in results:
        if r.status == "ok" and r.is_valid and r.headline is not None:
            engine = (r.experiment.engine, r.experiment.device_kind)  # with --devices, each GPU kind's best too
            if engine not in best or r.headline.median_ms < best[engine].headline.median_ms:
                best[engine] = r
    return sorted(best.values(), key=lambda r: r.headline.median_ms)


def across_kinds(results: list[Result]) -> list[str]:
    """Where ``--devices`` measured the same experiment (shape, batch size, engine, precision and engine options,
    host threads aside) on several GPU kinds: its median on each, fastest first, and each against the fastest."""
    same: dict[tuple, list[Result]] = {}
    for r in results:
        e = r.experiment
        if e.device_kind and r.status == "ok" and r.is_valid and r.headline is not None:
            options = options_text({k: v for k, v in r.configuration.items() if k != "threads"}, sort=True)
            same.setdefault((e.shape_tag, e.batch_size, e.engine, e.precision, options), []).append(r)
    lines = []
    for (shape, batch, engine, precision, options), rows in sorted(same.items(), key=lambda item: item[0]):
        if len({r.experiment.device_kind for r in rows}) < 2:
            continue
        rows.sort(key=lambda r: r.headline.median_ms)
        fastest = rows[0].headline.median_ms
        kinds = [f"{r.experiment.device_kind} {r.headline.median_ms:.3g} ms" + (f" ({r.headline.median_ms / fastest:.2f}x slower)" if i else "")
                 for i, r in enumerate(rows)]  # fmt: skip
        with_options = f" with {options}" if options else ""
        lines.append(f"shape {shape}, batch {batch}, {engine} {precision}{with_options}: {', '.join(kinds)}")
    return lines


def groups(results: list[Result]) -> list[tuple[str, int, list[Result]]]:
    """(shape, batch size, best per engine) for every shape and batch size with a valid result, in numeric order."""
    out = []
    for shape in shapes_of(results):
        of_shape = [r for r in results if r.experiment.shape_tag == shape]
        for batch in sorted({r.experiment.batch_size for r in of_shape}):
            best = best_per_engine([r for r in of_shape if r.experiment.batch_size == batch])
            if best:
                out.append((shape, batch, best))
    return out


def winner_sentence(batch: int, best: list[Result], speedup_of: Mapping[int, Speedup]) -> str:
    """``batch 1: onnxruntime-cuda fp16 with cuda_graph=true, 0.51 ms, 5.98x pytorch-cuda fp32 (default options) (99% CI ...).``"""
    top = best[0]
    e, config = top.experiment, configuration_text(top)
    with_options = "" if config == "default" else f" with {config}"
    text = f"batch {batch}: {e.engine}{e.on} {e.precision}{with_options}, {top.headline.median_ms:.3g} ms"
    rate = items_per_s(top)
    text += f" ({rate:,.0f} items/s)" if rate else ""
    speedup = speedup_of.get(id(top))
    if speedup is not None and speedup.ratio != 1.0:
        interval = f"99% CI {ratio_text(speedup.ci_low)}-{ratio_text(speedup.ci_high)}"
        text += f", {ratio_text(speedup.ratio)}x {speedup.baseline} ({interval})"
    elif speedup is not None:
        text += ", and it is the baseline itself"
    return text + "."


def verdict_markdown(results: list[Result], speedup_of: Mapping[int, Speedup]) -> list[str]:
    """Markdown: per shape, per batch size, one sentence naming the winner and the table of each engine at
    its best (footnoted warnings). Empty when nothing valid was measured."""
    lines, shape_done = [], None
    for shape, batch, best in groups(results):
        if shape != shape_done:
            lines += [f"### Shape {shape}", ""]
            shape_done = shape
        table, notes = footnoted_table(best, REPORT, speedup_of)
        lines += [f"**{winner_sentence(batch, best, speedup_of)}**", "", *table, ""]
        lines += [*notes, ""] if notes else []
    kinds = across_kinds(results)
    if kinds:
        lines += ["### Across GPU kinds", "", "The same experiment on each GPU kind `--devices` named (median, fastest first; "
                  "how many times slower than the fastest):", "", *(f"- {line}" for line in kinds), ""]  # fmt: skip
    return lines


def terminal_text(results: list[Result], speedup_of: Mapping[int, Speedup]) -> str:
    """The verdict as the terminal prints it at the end of a run: aligned plain-text tables, then the sentences."""
    chosen = [c for c in columns(REPORT) if c.header in TERMINAL_COLUMNS]
    context = Context(speedups=speedup_of)
    out = []
    for shape, batch, best in groups(results):
        rows = [[c.header for c in chosen]] + [[c.text(r, context) for c in chosen] for r in best]
        widths = [max(len(row[i]) for row in rows) for i in range(len(chosen))]
        out.append(f"shape {shape}, batch {batch}:")
        out += ["  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
        out += ["  -> " + winner_sentence(batch, best, speedup_of), ""]
    kinds = across_kinds(results)
    if kinds:
        out += ["across GPU kinds (median, fastest first; how many times slower than the fastest):", *(f"  {line}" for line in kinds)]
    return "\n".join(out).rstrip()
