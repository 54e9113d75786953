"""One list of columns drives every table: ``summary.csv``, ``summary.md``, the report's tables and the
progress line. Adding a metric is one field in ``record.py`` and one ``Column`` here.

A column has a CSV name and raw value, and where it appears in text (``views``) a header and a formatter.
``n/a`` marks a figure that does not apply or that the sample cannot support (p99 needs 459 samples).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from framework.files import write_atomic
from framework.results.record import Result
from framework.results.store import csv_text, load_results

CSV, SUMMARY, REPORT, PROGRESS = "csv", "summary", "report", "progress"


def num(digits: int = 3, suffix: str = "") -> Callable[[object], str]:
    return lambda v: "n/a" if v is None or v == "" else f"{v:,.{digits}f}{suffix}"


def sci(v) -> str:
    return "n/a" if v is None else f"{v:.2e}"


def pct(v) -> str:
    return "n/a" if v is None else f"{v:.1%}"


@dataclass(frozen=True)
class Column:
    name: str  # summary.csv header
    value: Callable[[Result], object]  # the raw figure (CSV)
    header: str = ""  # markdown header
    fmt: Callable[[object], str] = str  # value -> text, in markdown and progress lines
    views: frozenset = frozenset({CSV})

    def text(self, result: Result) -> str:
        return self.fmt(self.value(result))


def _lat(key: str, source: str = "latency") -> Callable[[Result], object]:
    return lambda r: getattr(getattr(r, source), key) if getattr(r, source) else None


def _worst(key: str) -> Callable[[Result], object]:
    return lambda r: getattr(r.agreement.worst, key) if r.agreement else None


def _top1_agreement(r: Result):
    """Over the whole dataset when there is one (it says more than one measured batch)."""
    if r.dataset_agreement and r.dataset_agreement.worst.top1_agreement is not None:
        return r.dataset_agreement.worst.top1_agreement
    return _worst("top1_agreement")(r)


def outcome(r: Result) -> str:
    """ok / INVALID: reasons / failed: reason; the same words in every table."""
    if r.status != "ok":
        return f"{r.status}: {r.reason}"
    if r.validity == "invalid":
        return "INVALID: " + "; ".join(r.invalid_reasons)
    return "valid" + "".join(f"; warning: {w}" for w in r.warnings)


def _median_with_ci(r: Result) -> str:
    s = r.latency
    if s is None:
        return "n/a"
    ci = f" ({s.median_ci99_low_ms:.3f}-{s.median_ci99_high_ms:.3f})" if s.median_ci99_low_ms is not None else ""
    return f"{s.median_ms:.3f}{ci}"


def _accuracy(r: Result) -> str:
    a = r.accuracy
    return "n/a" if a is None else f"{a.top1:.1%} / {a.top5:.1%} (n={a.samples})"


def _mean_max(source: str) -> Callable[[Result], str]:
    return lambda r: f"{getattr(r, source).mean_ms:.3f} / {getattr(r, source).max_ms:.3f}" if getattr(r, source) else "n/a"


def _rss(r: Result) -> str:
    res = r.resources
    if res is None or res.peak_rss_mb is None:
        return "n/a"
    own = res.engine_rss_mb
    return f"{res.peak_rss_mb:,.0f}" + (f" ({own:+.0f})" if own is not None else "")


def _gpu_mem(r: Result) -> str:
    res = r.resources
    if res is None or res.peak_process_gpu_mem_mb is None:
        return "n/a"
    context = f" ({res.cuda_context_mb:.0f})" if res.cuda_context_mb is not None else ""
    return f"{res.peak_process_gpu_mem_mb:,.0f}{context}"


def _export(key: str) -> Callable[[Result], object]:
    return lambda r: getattr(r.export, key) if r.export else None


def _views(*names: str) -> frozenset:
    return frozenset({CSV, *names})


ALL = _views(SUMMARY, REPORT)
E = lambda r: r.experiment  # noqa: E731
COLUMNS: list[Column] = [
    Column("model", lambda r: E(r).model),
    Column("shape", lambda r: E(r).shape_tag),
    Column("engine", lambda r: E(r).engine, "engine", views=ALL),
    Column("device", lambda r: r.device),
    Column("precision", lambda r: E(r).precision, "precision", views=ALL),
    Column("batch_size", lambda r: E(r).batch_size, "batch", views=_views(SUMMARY)),
    Column("status", lambda r: r.status),
    Column("reason", lambda r: r.reason),
    Column("validity", lambda r: r.validity),
    Column("invalid_reasons", lambda r: "; ".join(r.invalid_reasons)),
    Column("warnings", lambda r: "; ".join(r.warnings)),
    Column("result", outcome, "result", lambda t: t.replace("|", "/").replace("\n", " "), views=frozenset({SUMMARY, REPORT})),
    Column("n", _lat("n"), "n", views=_views(PROGRESS)),
    Column("timed_region_s", _lat("timed_region_s")),
    Column("mean_ms", _lat("mean_ms"), "mean ms", num(), views=_views(SUMMARY)),
    Column("std_ms", _lat("std_ms")),
    Column("cv", _lat("cv"), "CV", pct, views=_views(SUMMARY, PROGRESS)),
    Column("min_ms", _lat("min_ms"), "min ms", num(), views=_views(SUMMARY, REPORT)),
    Column("median_ms", _lat("median_ms"), "median ms", num(), views=_views(REPORT, PROGRESS)),
    Column("median_with_ci", _median_with_ci, "median ms (99% CI)", views=frozenset({SUMMARY})),
    Column("ci_half_width", _lat("ci_half_width"), "CI ±", pct, views=_views(SUMMARY, PROGRESS)),
    Column("stop_rule", _lat("stop_rule"), "stop", lambda v: "n/a" if v is None else str(v), views=_views(SUMMARY, PROGRESS)),
    Column("warmup_iterations", _lat("warmup_iterations")),
    Column("warmup_rule", _lat("warmup_rule")),
    Column("model_ci_half_width", _lat("ci_half_width", "latency_model"), "model CI ±", pct, views=_views(SUMMARY)),
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
    Column("latency_all_mean_max", _mean_max("latency"), "latency-all mean / max ms", views=frozenset({REPORT})),
    Column("latency_model_mean_max", _mean_max("latency_model"), "latency-model mean / max ms", views=frozenset({REPORT})),
    Column("throughput_items_per_s", _lat("throughput_items_per_s"), "items/s", num(1), views=ALL | {PROGRESS}),
    Column("model_median_ms", _lat("median_ms", "latency_model"), "model-only median ms", num(), views=_views(SUMMARY, PROGRESS)),
    Column("model_mean_ms", _lat("mean_ms", "latency_model")),
    Column("model_p99_ms", _lat("p99_ms", "latency_model")),
    Column(
        "model_throughput_items_per_s", _lat("throughput_items_per_s", "latency_model"), "model-only items/s", num(1), views=_views(SUMMARY, PROGRESS)
    ),
    Column("max_abs_error", _worst("max_abs_error"), "max abs err", sci, views=_views(SUMMARY, PROGRESS)),
    Column("relative_l2_error", _worst("relative_l2_error")),
    Column("cosine_similarity", _worst("cosine_similarity"), "agreement (cosine)", num(6), views=_views(REPORT)),
    Column("all_close", _worst("all_close")),
    Column("top1_agreement", _top1_agreement, "top-1 agreement", pct, views=_views(SUMMARY)),
    Column("accuracy_top1", lambda r: r.accuracy.top1 if r.accuracy else None),
    Column("accuracy_top5", lambda r: r.accuracy.top5 if r.accuracy else None),
    Column("accuracy_samples", lambda r: r.accuracy.samples if r.accuracy else None),
    Column("accuracy", _accuracy, "top-1 / top-5 accuracy", views=frozenset({SUMMARY, REPORT})),
    Column("model_size_mb", lambda r: r.model_size_mb, "size MB", num(1), views=ALL),
    Column("parameters", lambda r: r.parameters, "parameters", lambda v: "n/a" if v is None else f"{v:,}", views=_views(REPORT)),
    Column("onnx_nodes", _export("onnx_nodes"), "layers", lambda v: "n/a" if v is None else str(v), views=_views(REPORT)),
    Column("export_s", _export("export_s")),
    Column("load_s", lambda r: r.load_s),
    Column("build_s", lambda r: r.build_s, "build s", num(2), views=_views(SUMMARY)),
    Column("first_inference_ms", lambda r: r.first_inference_ms, "first inference ms", num(1), views=_views(SUMMARY)),
    Column("peak_rss", _rss, "peak RSS MB (engine)", views=frozenset({REPORT})),
    Column("peak_gpu", _gpu_mem, "peak GPU MB (context)", views=frozenset({REPORT})),
]


def columns(view: str) -> list[Column]:
    return [c for c in COLUMNS if view in c.views]


def markdown_table(results: list[Result], view: str) -> list[str]:
    chosen = columns(view)
    lines = ["| " + " | ".join(c.header for c in chosen) + " |", "|" + "---|" * len(chosen)]
    lines += ["| " + " | ".join(c.text(r) for c in chosen) + " |" for r in results]
    return lines


def progress_text(r: Result) -> str:
    """What the terminal says when one experiment ends."""
    if r.status != "ok" or r.latency is None:
        return f"{r.status.upper()}: {r.reason}"
    text = ", ".join(f"{c.header} {c.text(r)}" for c in columns(PROGRESS) if c.value(r) is not None)
    if r.validity == "invalid":
        text += f"; INVALID: {'; '.join(r.invalid_reasons)}"
    return text + "".join(f"; warning: {w}" for w in r.warnings)


def sort_key(r: Result) -> tuple:
    e = r.experiment
    return (e.shape_tag, e.batch_size, e.engine, e.precision)


def summary_markdown(results: list[Result]) -> str:
    out = []
    for shape in sorted({r.experiment.shape_tag for r in results}):
        of_shape = sorted((r for r in results if r.experiment.shape_tag == shape), key=sort_key)
        out += [f"## shape {shape}", "", *markdown_table(of_shape, SUMMARY), ""]
    return "\n".join(out) + "\n" + top_k_tables(results)


def top_k_tables(results: list[Result]) -> str:
    """Per shape, for models with a dataset: by rank of PyTorch fp32's class ordering, the share of samples
    whose class at that rank differs, and the mean absolute error of that class's score."""
    out = []
    for shape in sorted({r.experiment.shape_tag for r in results}):
        rows = []
        for r in sorted((r for r in results if r.experiment.shape_tag == shape), key=sort_key):
            table = r.dataset_agreement.top_k_table() if r.dataset_agreement else None
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


def write_model_tables(model_dir: Path) -> list[Result]:
    """Rebuild summary.csv and summary.md from the results on disk; return them."""
    results = sorted(load_results(model_dir), key=sort_key)
    csv_columns = columns(CSV)
    rows = [{c.name: c.value(r) for c in csv_columns} for r in results]
    write_atomic(model_dir / "summary.csv", csv_text(rows, [c.name for c in csv_columns]))
    write_atomic(model_dir / "summary.md", summary_markdown(results))
    return results
