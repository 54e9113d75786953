"""One list of columns drives every table: ``summary.csv``, ``summary.md``, the report's tables and the
progress line. Adding a metric is one field in ``record.py`` and one ``Column`` here.

A column has a CSV name and raw value, and where it appears in text (``views``) a header and a formatter.
Two figures depend on more than the row's own result: its speedup over the baseline and the numbers of its
footnotes. Their columns are ``contextual``: their value takes the result and the table's ``Context``.

A row that was not measured (failed, skipped, unavailable) shows its status and reason, and ``n/a`` in every
figure; ``n/a`` also marks a figure that does not apply or that the sample cannot support (p99 needs 459
samples). Warnings go to footnotes, numbered once per table and listed under it; summary.csv keeps them whole.
The median, its interval, items/s and the speedup are the headline's (device time for GPU engines, the host
clock otherwise); "items/s (wall time)" divides the items by the timed loop's wall time. Rows sort by number:
shapes by their dims, batch sizes as integers.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from framework.files import write_atomic
from framework.precisions import PRECISIONS
from framework.results.record import Result, options_text
from framework.results.speedup import Speedup, speedups
from framework.results.store import csv_text, load_results

CSV, SUMMARY, REPORT, PROGRESS = "csv", "summary", "report", "progress"
MEASURED = ("ok", "tuning")  # statuses whose rows carry figures; the others show "status: reason"


def num(digits: int = 3, suffix: str = "") -> Callable[[object], str]:
    return lambda v: "n/a" if v is None or v == "" else f"{v:,.{digits}f}{suffix}"


def sci(v) -> str:
    return "n/a" if v is None else f"{v:.2e}"


def pct(v) -> str:
    return "n/a" if v is None else f"{v:.1%}"


@dataclass(frozen=True)
class Context:
    """What a table knows beyond each row's result: ``id(result) -> Speedup`` (``speedup.speedups``) and
    ``id(result) -> footnote numbers``."""

    speedups: Mapping[int, Speedup] = field(default_factory=dict)
    notes: Mapping[int, tuple[int, ...]] = field(default_factory=dict)

    def speedup(self, r: Result) -> Speedup | None:
        return self.speedups.get(id(r))


NO_CONTEXT = Context()


@dataclass(frozen=True)
class Column:
    name: str  # summary.csv header
    value: Callable  # the raw figure (CSV): value(result), or value(result, context) when contextual
    header: str = ""  # markdown header
    fmt: Callable[[object], str] = str  # value -> text, in markdown and progress lines
    views: frozenset = frozenset({CSV})
    contextual: bool = False
    figure: bool = True  # n/a in a row that was not measured; False for what names the row (engine, result, notes)

    def raw(self, result: Result, context: Context = NO_CONTEXT) -> object:
        return self.value(result, context) if self.contextual else self.value(result)

    def text(self, result: Result, context: Context = NO_CONTEXT) -> str:
        if self.figure and result.status not in MEASURED:
            return "n/a"
        return self.fmt(self.raw(result, context))


def _lat(key: str, source: str = "latency") -> Callable[[Result], object]:
    return lambda r: getattr(getattr(r, source), key) if getattr(r, source) else None


def _head(key: str) -> Callable[[Result], object]:
    return lambda r: getattr(r.headline, key) if r.headline else None


def _worst(key: str) -> Callable[[Result], object]:
    return lambda r: getattr(r.agreement.worst, key) if r.agreement else None


def _top1_agreement(r: Result):
    """Over the whole dataset when there is one (it says more than one measured batch)."""
    if r.dataset_agreement and r.dataset_agreement.worst.top1_agreement is not None:
        return r.dataset_agreement.worst.top1_agreement
    return _worst("top1_agreement")(r)


def outcome(r: Result) -> str:
    """valid / INVALID: reasons / failed: reason; the same words in every table (warnings are footnotes)."""
    if r.status not in MEASURED:
        return f"{r.status}: {r.reason}"
    if r.status == "tuning" and r.validity is None:  # a tried configuration that failed: its reason says how
        return r.reason
    if r.validity == "invalid":
        return "INVALID: " + "; ".join(r.invalid_reasons)
    return "valid"


def configuration_text(r: Result) -> str:
    """The engine options that differ from its defaults: ``cuda_graph=true, compile=default``, else ``default``."""
    return options_text(r.configuration) or "default"


def items_per_s(r: Result) -> float | None:
    """Batch size over the headline's median: the throughput the median latency implies."""
    median = r.headline.median_ms if r.headline else None
    return r.experiment.batch_size * 1000 / median if median else None


def _median_with_ci(r: Result) -> str:
    s = r.headline
    if s is None:
        return "n/a"
    ci = f" ({s.median_ci99_low_ms:.3f}-{s.median_ci99_high_ms:.3f})" if s.median_ci99_low_ms is not None else ""
    return f"{s.median_ms:.3f}{ci}"


def _accuracy(r: Result) -> str:
    a = r.accuracy
    return "n/a" if a is None else f"{a.top1:.1%} / {a.top5:.1%} (n={a.samples})"


def quality_text(r: Result) -> str:
    """Accuracy on the dataset where there is one, and agreement with PyTorch fp32 (top-1, else cosine)."""
    parts = [f"top-1 {r.accuracy.top1:.1%}"] if r.accuracy and r.accuracy.top1 is not None else []
    agreement, cosine = _top1_agreement(r), _worst("cosine_similarity")(r)
    if agreement is not None:
        parts.append(f"agreement {agreement:.1%}")
    elif cosine is not None:
        parts.append(f"cosine {cosine:.6f}")
    return ", ".join(parts) or "n/a"


def peak_memory_text(r: Result) -> str:
    """Peak RSS with the engine's own share (above what the worker held before loading it) and, for GPU
    rows, the process's peak GPU memory with the CUDA context's share."""
    res = r.resources
    parts = []
    if res is not None and res.peak_rss_mb is not None:
        own = res.engine_rss_mb
        parts.append(f"RSS {res.peak_rss_mb:,.0f}" + (f" (engine {own:+,.0f})" if own is not None else ""))
    if res is not None and res.peak_process_gpu_mem_mb is not None:
        context = f" (context {res.cuda_context_mb:,.0f})" if res.cuda_context_mb is not None else ""
        parts.append(f"GPU {res.peak_process_gpu_mem_mb:,.0f}{context}")
    return "; ".join(parts) or "n/a"


def _gpu_host_median(r: Result) -> float | None:
    """The host clock's median where it is not the headline (GPU rows); the progress line shows both."""
    return r.latency.median_ms if r.latency and r.latency_model else None


def _export(key: str) -> Callable[[Result], object]:
    return lambda r: getattr(r.export, key) if r.export else None


def _speedup(key: str) -> Callable[[Result, Context], object]:
    return lambda r, c: getattr(c.speedup(r), key) if c.speedup(r) else None


def _notes(r: Result, c: Context) -> str:
    return " ".join(f"[{n}]" for n in c.notes.get(id(r), ()))


def _views(*names: str) -> frozenset:
    return frozenset({CSV, *names})


TEXT = frozenset({SUMMARY, REPORT})
E = lambda r: r.experiment  # noqa: E731
MAYBE = lambda v: "n/a" if v is None else str(v)  # noqa: E731
COLUMNS: list[Column] = [
    Column("model", lambda r: E(r).model),
    Column("shape", lambda r: E(r).shape_tag),
    Column("engine", lambda r: E(r).engine),
    Column("engine_on", lambda r: E(r).engine + E(r).on, "engine", views=TEXT, figure=False),  # "pytorch-cuda on H100" with --devices
    Column("device", lambda r: r.device),
    Column("precision", lambda r: E(r).precision, "precision", views=_views(*TEXT), figure=False),
    Column("batch_size", lambda r: E(r).batch_size, "batch", views=_views(SUMMARY), figure=False),
    Column("configuration", configuration_text, "configuration", views=_views(*TEXT), figure=False),
    Column("status", lambda r: r.status),
    Column("reason", lambda r: r.reason),
    Column("validity", lambda r: r.validity),
    Column("invalid_reasons", lambda r: "; ".join(r.invalid_reasons)),
    Column("warnings", lambda r: "; ".join(r.warnings)),
    Column("n", _lat("n"), "n", views=_views(PROGRESS)),
    Column("timed_region_s", _lat("timed_region_s")),
    Column("median_with_ci", _median_with_ci, "median ms (99% CI)", views=TEXT),
    Column("headline_median", _head("median_ms"), "median ms", num(), views=frozenset({PROGRESS})),
    Column("items_per_s", items_per_s, "items/s", num(1), views=_views(*TEXT, PROGRESS)),
    Column("speedup_text", lambda r, c: c.speedup(r).text() if c.speedup(r) else None, "speedup (99% CI)", MAYBE, TEXT, contextual=True),
    Column("speedup", _speedup("ratio"), contextual=True),
    Column("speedup_ci99_low", _speedup("ci_low"), contextual=True),
    Column("speedup_ci99_high", _speedup("ci_high"), contextual=True),
    Column("baseline", _speedup("baseline"), contextual=True),
    Column("headline_ci_half_width", _head("ci_half_width"), "CI ±", pct, views=frozenset({SUMMARY, PROGRESS})),
    Column("headline_stop_rule", _head("stop_rule"), "stop", MAYBE, views=frozenset({SUMMARY, PROGRESS})),
    Column("gpu_host_median", _gpu_host_median, "latency-all median ms", num(), views=frozenset({PROGRESS})),
    Column("throughput_items_per_s", _lat("throughput_items_per_s"), "items/s (wall time)", num(1), views=_views(SUMMARY, PROGRESS)),
    Column("median_ms", _lat("median_ms"), "latency-all median ms", num(), views=_views(SUMMARY)),
    Column("mean_ms", _lat("mean_ms"), "mean ms", num(), views=_views(SUMMARY)),
    Column("std_ms", _lat("std_ms")),
    Column("cv", _lat("cv"), "CV", pct, views=_views(SUMMARY, PROGRESS)),
    Column("min_ms", _lat("min_ms"), "min ms", num(), views=_views(SUMMARY)),
    Column("ci_half_width", _lat("ci_half_width")),
    Column("stop_rule", _lat("stop_rule")),
    Column("warmup_iterations", _lat("warmup_iterations")),
    Column("warmup_rule", _lat("warmup_rule")),
    Column("model_ci_half_width", _lat("ci_half_width", "latency_model")),
    Column("model_stop_rule", _lat("stop_rule", "latency_model")),
    Column("median_ci99_low_ms", _lat("median_ci99_low_ms")),
    Column("median_ci99_high_ms", _lat("median_ci99_high_ms")),
    Column("iqr_ms", _lat("iqr_ms")),
    Column("mad_ms", _lat("mad_ms")),
    Column("tukey_outliers", _lat("tukey_outliers")),
    Column("p90_ms", _lat("p90_ms")),
    Column("p95_ms", _lat("p95_ms")),
    Column("p99_ms", _lat("p99_ms"), "p99 ms", num(), views=_views(SUMMARY)),
    Column("max_ms", _lat("max_ms"), "max ms", num(), views=_views(SUMMARY)),
    Column("model_median_ms", _lat("median_ms", "latency_model")),
    Column("model_mean_ms", _lat("mean_ms", "latency_model")),
    Column("model_p99_ms", _lat("p99_ms", "latency_model")),
    Column("model_throughput_items_per_s", _lat("throughput_items_per_s", "latency_model")),
    Column("max_abs_error", _worst("max_abs_error"), "max abs err", sci, views=_views(SUMMARY, PROGRESS)),
    Column("relative_l2_error", _worst("relative_l2_error")),
    Column("cosine_similarity", _worst("cosine_similarity")),
    Column("all_close", _worst("all_close")),
    Column("top1_agreement", _top1_agreement, "top-1 agreement", pct, views=_views(SUMMARY)),
    Column("accuracy_top1", lambda r: r.accuracy.top1 if r.accuracy else None),
    Column("accuracy_top5", lambda r: r.accuracy.top5 if r.accuracy else None),
    Column("accuracy_samples", lambda r: r.accuracy.samples if r.accuracy else None),
    Column("accuracy", _accuracy, "top-1 / top-5 accuracy", views=frozenset({SUMMARY})),
    Column("quality", quality_text, "accuracy / agreement", views=frozenset({REPORT})),
    Column("model_size_mb", lambda r: r.model_size_mb, "size MB", num(1), views=_views(*TEXT)),
    Column("parameters", lambda r: r.parameters),
    Column("onnx_nodes", _export("onnx_nodes")),
    Column("export_s", _export("export_s")),
    Column("load_s", lambda r: r.load_s),
    Column("build_s", lambda r: r.build_s, "build s", num(2), views=_views(SUMMARY)),
    Column("compile_s", lambda r: r.compile_s, "compile s", num(2), views=_views(SUMMARY)),
    Column("first_inference_ms", lambda r: r.first_inference_ms, "first inference ms", num(1), views=_views(SUMMARY)),
    Column("peak_memory", peak_memory_text, "peak memory MB", views=frozenset({REPORT})),
    Column("result", outcome, "result", views=TEXT, figure=False),
    Column("notes", _notes, "notes", views=TEXT, contextual=True, figure=False),
    Column("device_kind", lambda r: E(r).device_kind),  # last: summary.csv readers that count columns keep working
]


def columns(view: str) -> list[Column]:
    return [c for c in COLUMNS if view in c.views]


def shape_key(tag: str) -> tuple:
    """Shape tags by their numbers: ``32x32x3`` before ``224x224x3`` (text between numbers compared as text)."""
    return tuple(int(part) if i % 2 else part for i, part in enumerate(re.split(r"(\d+)", tag)))


def sort_key(r: Result) -> tuple:
    """Shape (by its dims), batch size, engine, precision (fp32, fp16, int8: ``PRECISIONS``' order), configuration."""
    e = r.experiment
    order = list(PRECISIONS).index(e.precision) if e.precision in PRECISIONS else len(PRECISIONS)
    return (shape_key(e.shape_tag), e.batch_size, e.engine, order, e.precision, configuration_text(r))


def shapes_of(results: list[Result]) -> list[str]:
    """The results' shape tags, in numeric order."""
    return sorted({r.experiment.shape_tag for r in results}, key=shape_key)


def footnotes(results: list[Result]) -> tuple[dict[int, tuple[int, ...]], list[str]]:
    """Number the rows' warnings once per table, in row order, equal texts sharing a number: returns
    ``id(result) -> numbers`` and the footnote lines (``- [1] text``)."""
    numbers: dict[str, int] = {}
    notes = {}
    for r in results:
        notes[id(r)] = tuple(dict.fromkeys(numbers.setdefault(w, len(numbers) + 1) for w in r.warnings))
    return notes, [f"- [{n}] {_cell(text)}" for text, n in numbers.items()]


def _cell(text: str) -> str:
    return str(text).replace("|", "/").replace("\n", " ")


def footnoted_table(results: list[Result], view: str = REPORT, speedup_of: Mapping[int, Speedup] | None = None) -> tuple[list[str], list[str]]:
    """One markdown table of ``results`` (in the order given) with the columns of ``view``, and its footnotes.

    ``speedup_of``: ``id(result) -> Speedup`` (``model_speedups``); without it the speedup column says n/a.
    Returns (table lines, footnote lines); the footnote lines (``- [1] text``, a markdown list) go under the
    table, after a blank line; there are none when no row has a warning."""
    notes, lines = footnotes(results)
    context = Context(speedups=speedup_of or {}, notes=notes)
    chosen = columns(view)
    table = ["| " + " | ".join(c.header for c in chosen) + " |", "|" + "---|" * len(chosen)]
    table += ["| " + " | ".join(_cell(c.text(r, context)) for c in chosen) + " |" for r in results]
    return table, lines


def markdown_table(results: list[Result], view: str, speedup_of: Mapping[int, Speedup] | None = None) -> list[str]:
    """``footnoted_table``'s table, then (after a blank line) its footnotes, as one list of lines."""
    table, notes = footnoted_table(results, view, speedup_of)
    return table + ([""] + notes if notes else [])


def speedup_sentence(results: list[Result], speedup_of: Mapping[int, Speedup]) -> str | None:
    """What the speedup column compares against, for the text under a table; None when no row has one."""
    bases = sorted({speedup_of[id(r)].baseline for r in results if id(r) in speedup_of})
    if not bases:
        return None
    return (f"Speedup: the median of {' / '.join(bases)} (same batch size) over the row's median; "
            "above 1 is faster; in brackets its 99% bootstrap interval.")  # fmt: skip


def progress_text(r: Result) -> str:
    """What the terminal says when one experiment ends."""
    if r.status not in MEASURED or r.latency is None:
        return f"{r.status.upper()}: {r.reason}"
    text = ", ".join(f"{c.header} {c.text(r)}" for c in columns(PROGRESS) if c.raw(r) is not None)
    if r.validity == "invalid":
        text += f"; INVALID: {'; '.join(r.invalid_reasons)}"
    return text + "".join(f"; warning: {w}" for w in r.warnings)


def summary_markdown(results: list[Result], speedup_of: Mapping[int, Speedup] | None = None) -> str:
    """summary.md: per shape (numeric order) one table, rows in ``sort_key`` order, its footnotes, then the top-k tables."""
    out = []
    for shape in shapes_of(results):
        of_shape = sorted((r for r in results if r.experiment.shape_tag == shape), key=sort_key)
        table, notes = footnoted_table(of_shape, SUMMARY, speedup_of)
        sentence = speedup_sentence(of_shape, speedup_of or {})
        out += [f"## shape {shape}", "", *table, ""] + ([sentence, ""] if sentence else []) + (notes + [""] if notes else [])
    return "\n".join(out) + "\n" + top_k_tables(results)


def top_k_tables(results: list[Result]) -> str:
    """Per shape, for models with a dataset: by rank of PyTorch fp32's class ordering, the share of samples
    whose class at that rank differs, and the mean absolute error of that class's score."""
    out = []
    for shape in shapes_of(results):
        rows = []
        for r in sorted((r for r in results if r.experiment.shape_tag == shape), key=sort_key):
            table = r.dataset_agreement.top_k_table() if r.dataset_agreement and r.status in MEASURED else None
            if table:
                cells = " | ".join(f"{t['disagreement']:.1%} ({t['mean_abs_error']:.2g})" for t in table)
                rows.append(f"| {r.experiment.engine} | {r.experiment.precision} | {r.experiment.batch_size} | {cells} |")
        if rows:
            ranks = rows[0].count("|") - 4
            out += [f"## shape {shape}: agreement with PyTorch fp32 by rank, over the dataset", "",
                    "Per rank of PyTorch fp32's class ordering: share of samples whose class at that rank differs "
                    "(mean absolute error of that class's score).", "",
                    "| engine | precision | batch | " + " | ".join(f"rank {k}" for k in range(1, ranks + 1)) + " |",
                    "|---|---|---|" + "---|" * ranks, *rows, ""]  # fmt: skip
    return "\n".join(out) + ("\n" if out else "")


def model_speedups(model_dir: Path, results: list[Result], baseline: tuple[str, str] | None = None) -> dict[int, Speedup]:
    """``id(result) -> Speedup`` for ``results`` of one model, the baseline looked up among them and the
    configurations ``--tune`` tried (saved under ``model_dir``). ``baseline`` None: per device kind."""
    return speedups(results, load_results(model_dir, tuning=True), baseline)


def write_model_tables(model_dir: Path, baseline: tuple[str, str] | None = None) -> list[Result]:
    """Rebuild summary.csv and summary.md from the results on disk; return them."""
    results = sorted(load_results(model_dir), key=sort_key)
    context = Context(speedups=model_speedups(model_dir, results, baseline))
    csv_columns = columns(CSV)
    rows = [{c.name: c.raw(r, context) for c in csv_columns} for r in results]
    write_atomic(model_dir / "summary.csv", csv_text(rows, [c.name for c in csv_columns]))
    write_atomic(model_dir / "summary.md", summary_markdown(results, context.speedups))
    return results
