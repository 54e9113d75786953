"""Where results go and how they are written: raw latencies, per-experiment JSON, per-model tables.

Layout under the output folder::

    <model>/environment.json, summary.csv, summary.md
    <model>/<shape tag>/<engine>__<precision>__bs<batch>/latencies.csv, summary.json
    <model>/plots/<shape tag>/cpu_time_measurements.jpg (and cuda_time_measurements.jpg)
    <model>/cache/<shape tag>/model.onnx

Every file is written to a temporary name and renamed, so an interrupted run never leaves half a file.
The per-model tables are rebuilt from the per-experiment JSON files, never from memory.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import tempfile
from pathlib import Path

SUMMARY_COLUMNS = [
    "model", "shape", "engine", "device", "precision", "batch_size", "status", "reason", "validity",
    "invalid_reasons", "warnings", "n", "timed_region_s", "mean_ms", "std_ms", "cv", "min_ms", "median_ms",
    "median_ci99_low_ms", "median_ci99_high_ms", "iqr_ms", "mad_ms", "tukey_outliers", "p90_ms", "p95_ms", "p99_ms", "max_ms",
    "throughput_items_per_s", "model_median_ms", "model_mean_ms", "model_p99_ms", "model_throughput_items_per_s",
    "max_abs_error", "relative_l2_error", "cosine_similarity", "all_close", "top1_agreement",
    "accuracy_top1", "accuracy_top5", "accuracy_samples",
    "model_size_mb", "parameters", "onnx_nodes", "export_s", "load_s", "build_s", "first_inference_ms",
]  # fmt: skip
REPEATS_DIR = "repeats"  # <experiment>/repeats/<k>/: the raw files of each process of a --repeats run
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def safe_component(text: str) -> str:
    """A single path component that cannot climb out of the results folder."""
    cleaned = _UNSAFE.sub("_", str(text)).strip("._") or "_"
    return cleaned


def experiment_dir(output: Path, model: str, shape_tag: str, engine: str, precision: str, batch_size: int) -> Path:
    return output / safe_component(model) / safe_component(shape_tag) / f"{engine}__{precision}__bs{batch_size}"


def write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", newline="") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, data: dict) -> None:
    write_atomic(path, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def write_latencies(
    path: Path, latencies_ns: list[int], model_latencies_ns: list[int] | None = None, processes: list[int] | None = None
) -> None:
    """``latency_ms`` is latency-all (host clock); GPU engines add ``latency_model_ms`` (CUDA events), a
    separate timed loop whose sample count may differ (the shorter column ends with empty cells);
    ``--repeats`` runs add ``process``, the repeat (child process) each sample came from."""
    columns = [("latency_ms", [f"{ns / 1e6:.6f}" for ns in latencies_ns])]
    if model_latencies_ns is not None:
        columns.append(("latency_model_ms", [f"{ns / 1e6:.6f}" for ns in model_latencies_ns]))
    if processes is not None:
        columns.append(("process", [str(p) for p in processes]))
    lines = [",".join(["iteration"] + [name for name, _ in columns])]
    rows = max(len(values) for _, values in columns)
    lines += [",".join([str(i)] + [values[i] if i < len(values) else "" for _, values in columns]) for i in range(rows)]
    write_atomic(path, "\n".join(lines) + "\n")


def save_experiment(directory: Path, record: dict) -> None:
    """Raw samples first, summary.json last: a summary on disk means the experiment's files are complete.
    A record without samples (failed, skipped) removes any latencies.csv left by an earlier run."""
    samples = record.pop("latencies_ns", None)
    model_samples = record.pop("latencies_model_ns", None)
    timeline = record.pop("resources_timeline", None)
    if timeline is not None:
        write_atomic(directory / "resources.csv", timeline)
    if samples is not None:
        write_latencies(directory / "latencies.csv", samples, model_samples, record.pop("latencies_process", None))
    else:
        (directory / "latencies.csv").unlink(missing_ok=True)
    write_json(directory / "summary.json", record)


def read_record(directory: Path) -> dict | None:
    """The experiment's summary.json, or None when absent or unreadable (an interrupted write never is)."""
    try:
        return json.loads((directory / "summary.json").read_text())
    except (OSError, ValueError):
        return None


def read_latencies_ms(path: Path, column: str = "latency_ms") -> list[float]:
    with path.open() as handle:
        return [float(row[column]) for row in csv.DictReader(handle) if row[column] not in ("", None)]


def is_complete(directory: Path, fingerprint: str) -> dict | None:
    """The record of a finished, valid experiment measured with the same settings (resume skips it), else None."""
    record = read_record(directory)
    if not record or record.get("status") != "ok" or record.get("validity") != "valid" or record.get("fingerprint") != fingerprint:
        return None
    try:
        if len(read_latencies_ms(directory / "latencies.csv")) != record["latency"]["n"]:
            return None
    except (OSError, KeyError, ValueError):
        return None
    return record


def load_experiments(root: Path) -> list[dict]:
    """Every experiment's summary.json under ``root`` (one model's folder or a whole results folder), in a
    stable order, each with ``_dir``: the folder holding its latencies.csv."""
    records = []
    for path in sorted(Path(root).rglob("summary.json")):
        if REPEATS_DIR in path.relative_to(root).parts[:-1]:
            continue  # one process of a --repeats run; its experiment's own summary pools them
        record = json.loads(path.read_text())
        if "engine" in record:
            record["_dir"] = str(path.parent)
            records.append(record)
    return records


def flat_row(record: dict) -> dict:
    latency = record.get("latency") or {}
    agreement = (record.get("agreement") or {}).get("worst") or {}
    model = {f"model_{k}": v for k, v in (record.get("latency_model") or {}).items()}
    accuracy = {f"accuracy_{k}": v for k, v in (record.get("accuracy") or {}).items()}
    on_dataset = ((record.get("dataset_agreement") or {}).get("worst") or {}).get("top1_agreement")
    keys = ("max_abs_error", "relative_l2_error", "cosine_similarity", "all_close", "top1_agreement")
    row = {**record, **latency, **model, **accuracy, **{k: agreement.get(k) for k in keys}}
    row["shape"] = record.get("shape_tag")
    if on_dataset is not None:  # agreement over the whole dataset says more than over one measured batch
        row["top1_agreement"] = on_dataset
    for key in ("invalid_reasons", "warnings"):
        row[key] = "; ".join(record.get(key) or [])
    return {column: row.get(column) for column in SUMMARY_COLUMNS}


def write_model_tables(model_dir: Path) -> list[dict]:
    """Rebuild summary.csv and summary.md from the experiments on disk; return the flat rows."""
    records = load_experiments(model_dir)
    rows = [flat_row(r) for r in records]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=SUMMARY_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_atomic(model_dir / "summary.csv", buffer.getvalue())
    write_atomic(model_dir / "summary.md", markdown_table(rows) + top_k_tables(records))
    return rows


def markdown_table(rows: list[dict]) -> str:
    """One table per shape: a row per engine/precision/batch, as in the seed projects' tables.

    "n/a" marks a figure the run cannot support (p99 needs 459 samples) or that does not apply.
    """
    out = []
    for shape in sorted({r["shape"] for r in rows}):
        out += [
            f"## shape {shape}",
            "",
            "| engine | precision | batch | status | median ms (99% CI) | mean ms | CV | p99 ms | max ms | items/s "
            "| model-only median ms | model-only items/s | max abs err | top-1 agreement | top-1 / top-5 accuracy "
            "| size MB | build s | first inference ms |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in (r for r in rows if r["shape"] == shape):
            if r["status"] != "ok":
                status = f"{r['status']}: {r['reason']}"
            elif r["validity"] == "invalid":
                status = f"INVALID: {r['invalid_reasons']}"
            else:
                status = "ok" + (f" (warning: {r['warnings']})" if r["warnings"] else "")
            ci = f" ({_fmt(r['median_ci99_low_ms'])}-{_fmt(r['median_ci99_high_ms'])})" if r["median_ci99_low_ms"] is not None else ""
            out.append(
                f"| {r['engine']} | {r['precision']} | {r['batch_size']} | {status} | {_fmt(r['median_ms'])}{ci} | "
                f"{_fmt(r['mean_ms'])} | {_fmt(r['cv'] * 100 if r['cv'] is not None else None, 1)}% | {_fmt(r['p99_ms'])} | "
                f"{_fmt(r['max_ms'])} | {_fmt(r['throughput_items_per_s'], 1)} | "
                f"{_fmt(r['model_median_ms'])} | {_fmt(r['model_throughput_items_per_s'], 1)} | "
                f"{_fmt(r['max_abs_error'], sci=True)} | {_pct(r['top1_agreement'])} | {_accuracy(r)} | "
                f"{_fmt(r['model_size_mb'], 1)} | {_fmt(r['build_s'], 2)} | "
                f"{_fmt(r['first_inference_ms'], 1)} |"
            )
        out.append("")
    return "\n".join(out) + "\n"


def top_k_tables(records: list[dict]) -> str:
    """The seeds' top-10 table, per shape, for models with a dataset: by rank of the PyTorch fp32 ordering,
    the share of samples whose class at that rank differs, and the mean absolute error of that class's score."""
    out = []
    for shape in sorted({r["shape_tag"] for r in records}):
        rows = []
        for r in records:
            outputs = ((r.get("dataset_agreement") or {}).get("outputs") or {}) if r["shape_tag"] == shape else {}
            table = next((o["top_k"] for o in outputs.values() if "top_k" in o), None)
            if table:
                cells = " | ".join(f"{t['disagreement']:.1%} ({t['mean_abs_error']:.2g})" for t in table)
                rows.append(f"| {r['engine']} | {r['precision']} | {r['batch_size']} | {cells} |")
        if rows:
            ranks = len(rows[0].split("|")) - 5
            out += [f"## shape {shape}: agreement with PyTorch fp32 by rank, over the dataset", "",
                    "Per rank of PyTorch fp32's class ordering: share of samples whose class at that rank differs "
                    "(mean absolute error of that class's score).", "",
                    "| engine | precision | batch | " + " | ".join(f"rank {k}" for k in range(1, ranks + 1)) + " |",
                    "|---|---|---|" + "---|" * ranks, *rows, ""]  # fmt: skip
    return "\n".join(out) + ("\n" if out else "")


def _pct(value) -> str:
    return "n/a" if value is None or value == "" else f"{value:.1%}"


def _accuracy(row: dict) -> str:
    if row["accuracy_top1"] is None:
        return "n/a"
    return f"{row['accuracy_top1']:.1%} / {row['accuracy_top5']:.1%} (n={row['accuracy_samples']})"


def _fmt(value, digits: int = 3, sci: bool = False) -> str:
    if value is None or value == "":
        return "n/a"
    return f"{value:.2e}" if sci else f"{value:.{digits}f}"
