"""``report.md`` and a self-contained ``report.html`` for one model, rebuilt from the files on disk.

The verdict first (``results.verdict``): per shape and batch size, each engine at its best and a sentence
naming the winner. Then the machine and what the figures mean; then per shape and batch size (in numeric
order) every result (``results.tables``, view ``REPORT``), failed rows included with their reason, warnings
as footnotes; the configurations ``--tune`` tried; and the shape's plots, walking ``figures.FIGURES`` for
their captions and files. The HTML inlines the images (base64), so the one file can be mailed.
"""

from __future__ import annotations

import base64
import html
import json
import re
from pathlib import Path

from framework.files import write_atomic
from framework.report.figures import FIGURES, plot_link
from framework.report.recipes import load_search_steps, search_section
from framework.results.record import Result
from framework.results.speedup import Speedup, missing_baseline
from framework.results.store import load_results
from framework.results.tables import (
    REPORT,
    configuration_text,
    markdown_table,
    model_speedups,
    outcome,
    shapes_of,
    sort_key,
    speedup_sentence,
    top_k_tables,
)
from framework.results.verdict import verdict_markdown

ENVIRONMENT = "environment.json"
REPORT_MD, REPORT_HTML = "report.md", "report.html"
DEFINITIONS = (
    "The median (with its 99% confidence interval), items/s (batch size / median) and the speedup are device time "
    "from CUDA events, inputs already on the GPU, for GPU engines, and the host clock for CPU engines; the host "
    "clock of GPU engines (pinned host input to host output, copies included) is in summary.md. Warm-up is "
    "excluded. Accuracy is top-1 on the model's dataset; agreement is top-1 agreement with PyTorch fp32 where the "
    "model has a dataset, else the cosine similarity of the outputs with PyTorch fp32 on the same inputs. INVALID "
    "rows are kept but never win; `n/a` marks a figure that does not apply or that the sample cannot support."
)
SEVEN_BIT = ("This CPU has no VNNI: its int8 graph for ONNX Runtime CPU quantizes weights to 7 bits, which avoids the "
             "saturation of ONNX Runtime's u8s8 kernels on such CPUs; int8 figures from a CPU with VNNI use 8.")  # fmt: skip
HOST_BOUND = ("Some GPU results are host-bound (the host takes as long to issue an iteration as the GPU to run "
              "it): CUDA graphs remove that launch cost (`--option cuda_graph=true`).")  # fmt: skip


def write_report(model_dir: Path, results: list[Result] | None = None, baseline: tuple[str, str] | None = None) -> tuple[Path, Path]:
    """Write report.md and report.html into ``model_dir`` (from ``results``, else those on disk); return both paths.
    The plots are linked where their files exist: draw them first. ``baseline``: as ``speedup.speedups``."""
    model_dir = Path(model_dir)
    results = sorted(load_results(model_dir) if results is None else results, key=sort_key)
    speedup_of = model_speedups(model_dir, results, baseline)
    text = build_markdown(model_dir, results, speedup_of, missing_baseline(results, speedup_of, baseline))
    md_path, html_path = model_dir / REPORT_MD, model_dir / REPORT_HTML
    write_atomic(md_path, text)
    write_atomic(html_path, markdown_to_html(text, model_dir, title=f"deploybench: {model_dir.name}"))
    return md_path, html_path


def read_environment(model_dir: Path) -> dict:
    path = Path(model_dir) / ENVIRONMENT
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def preamble(model_dir: Path, results: list[Result]) -> list[str]:
    """The machine, the engines it could not run, what the figures mean, and the notes the results call for."""
    env = read_environment(model_dir)
    gpus = ", ".join(f"{g['name']} (driver {g['driver']})" for g in env.get("gpus", [])) or "none"
    packages = ", ".join(f"{k} {v}" for k, v in sorted(env.get("packages", {}).items()) if v)
    lines = ["## Machine and definitions", "",
             f"CPU: {env.get('cpu_model', 'unknown')}; GPUs: {gpus}; Python {env.get('python', '?')}; {packages}.", ""]  # fmt: skip
    missing = {name: why for name, why in env.get("engines", {}).items() if why}
    if missing:
        lines += ["Engines this machine cannot run, so not measured: " + "; ".join(f"{name} ({why})" for name, why in missing.items()) + ".", ""]
    lines += [DEFINITIONS, ""]
    cpu_int8 = any(r.experiment.precision == "int8" and r.device == "cpu" and r.status == "ok" for r in results)
    if env.get("cpu_int8_saturates") and cpu_int8:
        lines += [SEVEN_BIT, ""]
    if any("host-bound" in w for r in results for w in r.warnings):
        lines += [HOST_BOUND, ""]
    return lines


def shape_section(model_dir: Path, shape: str, results: list[Result], speedup_of: dict[int, Speedup]) -> list[str]:
    """One shape: a table per batch size (numeric order), the configurations ``--tune`` tried, then every
    figure of ``FIGURES`` that was drawn."""
    lines = [f"## Shape {shape}: every result", ""]
    for batch in sorted({int(r.experiment.batch_size) for r in results}):
        rows = sorted((r for r in results if int(r.experiment.batch_size) == batch), key=lambda r: r.experiment.device_kind or "")  # by GPU kind
        lines += [f"### Batch size {batch}", "", *markdown_table(rows, REPORT, speedup_of), ""]
    sentence = speedup_sentence(results, speedup_of)
    lines += [sentence, ""] if sentence else []
    lines += tuning_section(load_results(model_dir, tuning=True), shape, results)
    lines += search_section(load_search_steps(model_dir), results, shape)  # what the precision search tried, where it ran
    for figure in FIGURES:
        link = plot_link(shape, figure)
        if (model_dir / link).is_file():
            lines += [f"**{figure.caption}**", "", f"![{figure.caption}]({link})", ""]
    return lines


def tuning_section(tried: list[Result], shape: str, results: list[Result]) -> list[str]:
    """The configurations ``--tune`` tried for this shape, in the order tried: options, median, compile/build
    time, valid or why not, and which one was chosen (the full results' ``tuning``)."""
    chosen = {r.experiment: r.tuning for r in results if r.tuning and "chosen" in r.tuning}
    rows = [r for r in tried if r.experiment.shape_tag == shape]
    if not rows:
        return []

    def order(r: Result) -> tuple:
        labels = list((chosen.get(r.experiment) or {}).get("tried", ()))
        name = (r.tuning or {}).get("label")
        return (sort_key(r)[:4], labels.index(name) if name in labels else len(labels))

    lines = ["### Configurations tried by --tune", "",
             "In the order tried. The defaults are measured in full (they are the speedups' baseline), the others briefly (the "
             "median to about ±2% or 2 s); the fastest valid one of each engine, precision and batch size was then measured "
             "fully. Compile and build times are not part of any latency.", "",
             "| engine | precision | batch | configuration | median ms | compile s | build s | result |",
             "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in sorted(rows, key=order):
        e, head = r.experiment, r.headline
        figures = [f"{head.median_ms:.4g}" if head else "n/a", f"{r.compile_s:.1f}" if r.compile_s else "n/a",
                   f"{r.build_s:.2f}" if r.build_s else "n/a"]  # fmt: skip
        mark = " (chosen)" if (chosen.get(e) or {}).get("chosen") == (r.tuning or {}).get("label") else ""
        cells = [e.engine, e.precision, str(e.batch_size), configuration_text(r), *figures, outcome(r).replace("|", "/") + mark]
        lines.append("| " + " | ".join(cells) + " |")
    return lines + [""]


def build_markdown(model_dir: Path, results: list[Result], speedup_of: dict[int, Speedup] | None = None, note: str | None = None) -> str:
    model_dir = Path(model_dir)
    speedup_of = speedup_of or {}
    verdict = verdict_markdown(results, speedup_of)
    lines = [f"# deploybench report: {model_dir.name}", ""]
    if verdict:
        lines += ["## Verdict: each engine at its best", "", *([note, ""] if note else []), *verdict]
    lines += preamble(model_dir, results)
    for shape in shapes_of(results):
        lines += shape_section(model_dir, shape, [r for r in results if r.experiment.shape_tag == shape], speedup_of)
    top_k = top_k_tables(results)
    if top_k:
        lines += [top_k.replace("## shape", "## Shape")]
    from framework.report.shape_section import section_for_report  # --shape-mix's section, where it ran

    lines += section_for_report(model_dir)
    return "\n".join(lines) + "\n"


def _inline(s: str) -> str:
    s = html.escape(s)
    s = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", s)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", s)


def _table_html(lines: list[str]) -> str:
    header, *rows = [[c.strip() for c in line.strip().strip("|").split("|")] for line in lines if not set(line) <= set("|-: ")]
    head = "".join(f"<th>{_inline(c)}</th>" for c in header)
    body = "".join("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _block_html(line: str, base: Path) -> str | None:
    """One line that is not part of a table: an image (inlined), a heading, a paragraph or nothing."""
    image = re.fullmatch(r"!\[(.*)\]\((.+)\)", line.strip())
    if image:
        path = base / image.group(2)
        if not path.is_file():
            return f"<p>(missing plot: {html.escape(image.group(2))})</p>"
        data = base64.b64encode(path.read_bytes()).decode()
        return f'<img alt="{html.escape(image.group(1))}" src="data:image/jpeg;base64,{data}">'
    if line.startswith("#"):
        level = len(line) - len(line.lstrip("#"))
        return f"<h{level}>{_inline(line[level:].strip())}</h{level}>"
    return f"<p>{_inline(line)}</p>" if line.strip() else None


STYLE = ("body{font-family:sans-serif;margin:2em;max-width:1500px} table{border-collapse:collapse;font-size:13px;margin:1em 0}"
         "td,th{border:1px solid #bbb;padding:3px 6px;text-align:left} th{background:#eee} img{max-width:100%;border:1px solid #ddd}")  # fmt: skip


def markdown_to_html(text: str, base: Path, title: str) -> str:
    """The report's own markdown (headings, paragraphs, bold captions, tables, images) as one HTML page with
    every image inlined."""
    body, table, code = [], [], None
    for line in text.splitlines():
        if line.startswith("```"):  # fenced code (the shape-mix section's config.yaml snippets): verbatim
            if code is not None:
                body.append(f"<pre>{html.escape(chr(10).join(code))}</pre>")
            code = [] if code is None else None
            continue
        if code is not None:
            code.append(line)
            continue
        if line.startswith("|"):
            table.append(line)
            continue
        if table:
            body.append(_table_html(table))
            table = []
        block = _block_html(line, Path(base))
        if block:
            body.append(block)
    if table:
        body.append(_table_html(table))
    return (f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>{STYLE}</style></head><body>\n"
            + "\n".join(body) + "\n</body></html>\n")  # fmt: skip
