"""``report.md`` and a self-contained ``report.html`` for one model, rebuilt from the files on disk.

Per shape and batch size, a table in the seeds' style (latency-all mean/max, latency-model mean/max, size,
accuracy or agreement, layers, parameters) with memory and the validity of each row, failed rows included
with their reason; then the plots. The HTML inlines the images (base64), so the one file can be mailed.
"""

from __future__ import annotations

import base64
import html
import json
import re
from pathlib import Path

from framework.results.store import load_experiments, safe_component, top_k_tables, write_atomic

PLOT_ORDER = [
    ("cpu_time_measurements.jpg", "Latency of CPU engines (host clock)"),
    ("cuda_time_measurements.jpg", "Latency of GPU engines (device time, CUDA events)"),
    ("latency_bars.jpg", "Median latency per engine"),
    ("throughput_vs_batch.jpg", "Throughput against batch size"),
    ("accuracy_vs_latency.jpg", "Accuracy (or agreement) against latency, Pareto front marked"),
    ("cpu_mb_measurements.jpg", "Resident memory over time"),
    ("cpu_pct_util_measurements.jpg", "CPU use over time"),
    ("gpu_0_mb_measurements.jpg", "GPU memory of the process over time"),
    ("gpu_0_pct_util_measurements.jpg", "GPU utilisation over time"),
]


def write_report(model_dir: Path) -> tuple[Path, Path]:
    """Write report.md and report.html into ``model_dir``; return both paths."""
    model_dir = Path(model_dir)
    records = load_experiments(model_dir)
    text = build_markdown(model_dir, records)
    md_path, html_path = model_dir / "report.md", model_dir / "report.html"
    write_atomic(md_path, text)
    write_atomic(html_path, markdown_to_html(text, model_dir, title=f"deploybench: {model_dir.name}"))
    return md_path, html_path


def build_markdown(model_dir: Path, records: list[dict]) -> str:
    env_path = model_dir / "environment.json"
    env = json.loads(env_path.read_text()) if env_path.exists() else {}
    gpus = ", ".join(f"{g['name']} (driver {g['driver']})" for g in env.get("gpus", [])) or "none"
    packages = ", ".join(f"{k} {v}" for k, v in sorted(env.get("packages", {}).items()) if v)
    lines = [
        f"# deploybench report: {model_dir.name}",
        "",
        f"CPU: {env.get('cpu_model', 'unknown')}; GPUs: {gpus}; Python {env.get('python', '?')}; {packages}.",
        "",
    ]
    missing = {name: why for name, why in env.get("engines", {}).items() if why}
    if missing:
        lines += ["Engines this machine cannot run, so not measured: " + "; ".join(f"{name} ({why})" for name, why in missing.items()) + ".", ""]
    lines += [
        "Latency-all is one inference call on the host clock (GPU engines: pinned host input to host output, copies "
        "included); latency-model is device time from CUDA events with inputs already on the GPU. Warm-up is excluded. "
        "Accuracy is top-1/top-5 on the model's dataset; agreement is the cosine similarity of the outputs with "
        "PyTorch fp32 on the same inputs. INVALID rows are kept but never win; `n/a` marks a figure that does not "
        "apply or that the sample cannot support.",
        "",
    ]
    if env.get("cpu_int8_saturates") and any(r["precision"] == "int8" and r.get("device") == "cpu" and r["status"] == "ok" for r in records):
        lines += ["This CPU has no VNNI: its int8 graph for ONNX Runtime CPU quantizes weights to 7 bits, which avoids the "
                  "saturation of ONNX Runtime's u8s8 kernels on such CPUs; int8 figures from a CPU with VNNI use 8.", ""]  # fmt: skip
    if any("host-bound" in w for r in records for w in r.get("warnings", [])):
        lines += ["Some GPU results are host-bound (the host takes as long to issue an iteration as the GPU to run "
                  "it): CUDA graphs remove that launch cost (`--option cuda_graph=true`).", ""]  # fmt: skip
    for shape in sorted({r["shape_tag"] for r in records}):
        lines += [f"## Shape {shape}", ""]
        for batch in sorted({r["batch_size"] for r in records if r["shape_tag"] == shape}):
            rows = sorted((r for r in records if r["shape_tag"] == shape and r["batch_size"] == batch), key=lambda r: (r["engine"], r["precision"]))
            lines += [f"### Batch size {batch}", "", *experiment_table(rows), ""]
        plots = model_dir / "plots" / safe_component(shape)
        for filename, caption in PLOT_ORDER:
            if (plots / filename).exists():
                lines += [f"**{caption}**", "", f"![{caption}](plots/{safe_component(shape)}/{filename})", ""]
    top_k = top_k_tables(records)
    if top_k:
        lines += [top_k.replace("## shape", "## Shape")]
    return "\n".join(lines) + "\n"


def experiment_table(rows: list[dict]) -> list[str]:
    out = [
        "| engine | precision | result | latency-all mean / max ms | latency-model mean / max ms | median ms | items/s "
        "| size MB | accuracy top-1 / top-5 | agreement (cosine) | layers | parameters | peak RSS MB (engine) | peak GPU MB (context) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r["status"] != "ok":
            result = f"{r['status']}: {r.get('reason', '')}"
        elif r.get("validity") == "invalid":
            result = "INVALID: " + "; ".join(r.get("invalid_reasons", []))
        else:
            result = "valid" + "".join(f"; warning: {w}" for w in r.get("warnings", []))
        latency, model = r.get("latency") or {}, r.get("latency_model") or {}
        accuracy = r.get("accuracy")
        agreement = ((r.get("agreement") or {}).get("worst") or {}).get("cosine_similarity")
        resources = r.get("resources") or {}
        rss = resources.get("peak_rss_mb")
        own = rss - resources["rss_before_load_mb"] if rss is not None and resources.get("rss_before_load_mb") is not None else None
        gpu = resources.get("peak_process_gpu_mem_mb")
        accuracy_text = f"{accuracy['top1']:.2%} / {accuracy['top5']:.2%}" if accuracy else "n/a"
        rss_text = _num(rss, 0) + (f" ({own:+.0f})" if own is not None else "")
        context = resources.get("cuda_context_mb")
        gpu_text = _num(gpu, 0) + (f" ({context:.0f})" if gpu is not None and context is not None else "")
        layers = r.get("onnx_nodes") if r.get("onnx_nodes") is not None else "n/a"
        out.append(
            f"| {r['engine']} | {r['precision']} | {_cell(result)} | {_pair(latency)} | {_pair(model)} | {_num(latency.get('median_ms'))} | "
            f"{_num(latency.get('throughput_items_per_s'), 1)} | {_num(r.get('model_size_mb'), 1)} | {accuracy_text} | "
            f"{_num(agreement, 6)} | {layers} | {r.get('parameters') or 'n/a'} | {rss_text} | {gpu_text} |"
        )
    return out


def _cell(text: str) -> str:
    return text.replace("|", "/").replace("\n", " ")


def _num(value, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


def _pair(latency: dict) -> str:
    return f"{latency['mean_ms']:.3f} / {latency['max_ms']:.3f}" if latency else "n/a"


def markdown_to_html(text: str, base: Path, title: str) -> str:
    """The report's own markdown (headings, paragraphs, bold captions, tables, images) as one HTML page with
    every image inlined."""
    body, table = [], []

    def inline(s: str) -> str:
        s = html.escape(s)
        s = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", s)
        return re.sub(r"`(.+?)`", r"<code>\1</code>", s)

    def flush_table() -> None:
        if table:
            header, *rows = [[c.strip() for c in line.strip().strip("|").split("|")] for line in table if not set(line) <= set("|-: ")]
            body.append("<table><thead><tr>" + "".join(f"<th>{inline(c)}</th>" for c in header) + "</tr></thead><tbody>"
                        + "".join("<tr>" + "".join(f"<td>{inline(c)}</td>" for c in row) + "</tr>" for row in rows) + "</tbody></table>")  # fmt: skip
            table.clear()

    for line in text.splitlines():
        if line.startswith("|"):
            table.append(line)
            continue
        flush_table()
        image = re.fullmatch(r"!\[(.*)\]\((.+)\)", line.strip())
        if image:
            data = base64.b64encode((base / image.group(2)).read_bytes()).decode()
            body.append(f'<img alt="{html.escape(image.group(1))}" src="data:image/jpeg;base64,{data}">')
        elif line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            body.append(f"<h{level}>{inline(line[level:].strip())}</h{level}>")
        elif line.strip():
            body.append(f"<p>{inline(line)}</p>")
    flush_table()
    style = ("body{font-family:sans-serif;margin:2em;max-width:1500px} table{border-collapse:collapse;font-size:13px;margin:1em 0}"
             "td,th{border:1px solid #bbb;padding:3px 6px;text-align:left} th{background:#eee} img{max-width:100%;border:1px solid #ddd}")  # fmt: skip
    return f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n"
