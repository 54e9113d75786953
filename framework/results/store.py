"""Where results live and how they are read back. Nothing here changes a record.

Layout under the output folder::

    <model>/environment.json, summary.csv, summary.md, report.md, report.html
    <model>/<shape tag>/<engine>__<precision>__bs<batch>/summary.json, latencies.csv, resources.csv, job.json
    <model>/<shape tag>/<engine>__<precision>__bs<batch>/repeats/<k>/...   (one process of a --repeats run)
    <model>/<shape tag>/<engine>__<precision>__bs<batch>/tuning/<label>/... (a configuration --tune tried)
    <model>/plots/<shape tag>/*.jpg
    <model>/cache/<shape tag>/model.onnx (+ graphs, engines, their .meta.json)

Raw samples are written first and ``summary.json`` last, each whole (``files.write_atomic``): a summary on
disk means the experiment's files are complete.
"""

from __future__ import annotations

import csv
import io
import json
import warnings
from pathlib import Path

from framework.errors import ResultFileError
from framework.files import write_all_atomic
from framework.results.record import Result, Samples

REPEATS_DIR = "repeats"  # <experiment>/repeats/<k>/: the raw files of each process of a --repeats run
TUNING_DIR = "tuning"  # <experiment>/tuning/<label>/: one configuration --tune tried (status "tuning")
SEARCH_DIR = "search"  # <experiment>/search/<step>/: one recipe the precision search measured (status "search")
SUMMARY = "summary.json"
LATENCIES = "latencies.csv"
TIMELINE = "resources.csv"


def latencies_csv(samples: Samples) -> str:
    """``latency_ms`` (host clock); GPU engines add ``latency_model_ms`` (CUDA events, a separate loop whose
    sample count may differ: the shorter column ends with empty cells); ``--repeats`` adds ``process``."""
    columns = [("latency_ms", [f"{ns / 1e6:.6f}" for ns in samples.latencies_ns])]
    if samples.model_latencies_ns is not None:
        columns.append(("latency_model_ms", [f"{ns / 1e6:.6f}" for ns in samples.model_latencies_ns]))
    if samples.processes is not None:
        columns.append(("process", [str(p) for p in samples.processes]))
    lines = [",".join(["iteration"] + [name for name, _ in columns])]
    rows = max(len(values) for _, values in columns)
    lines += [",".join([str(i)] + [values[i] if i < len(values) else "" for _, values in columns]) for i in range(rows)]
    return "\n".join(lines) + "\n"


def read_samples(path: Path) -> Samples:
    with Path(path).open() as handle:
        rows = list(csv.DictReader(handle))

    def column(name: str, convert) -> tuple | None:
        if not rows or name not in rows[0]:
            return None
        return tuple(convert(r[name]) for r in rows if r[name] not in ("", None))

    to_ns = lambda text: round(float(text) * 1e6)  # noqa: E731  (6 decimals of ms: exact nanoseconds)
    return Samples(column("latency_ms", to_ns) or (), column("latency_model_ms", to_ns), column("process", int))


def save_result(directory: Path, result: Result) -> None:
    """Samples and timeline first, ``summary.json`` last. A result without samples removes stale ones."""
    directory = Path(directory)
    files: dict[Path, str] = {}
    if result.timeline_csv is not None:
        files[directory / TIMELINE] = result.timeline_csv
    if result.samples is not None:
        files[directory / LATENCIES] = latencies_csv(result.samples)
    files[directory / SUMMARY] = json.dumps(result.to_json(), indent=2, default=str) + "\n"
    write_all_atomic(files)  # all written before any replaces the old ones: a full disk keeps the old result
    if result.samples is None:
        (directory / LATENCIES).unlink(missing_ok=True)


def load_result(directory: Path) -> Result:
    """The result saved in ``directory``; ``ResultFileError`` naming the file when it is missing or damaged."""
    path = Path(directory) / SUMMARY
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ResultFileError(f"{path}: unreadable ({exc.__class__.__name__}: {exc})") from None
    samples = timeline = None
    try:
        if (path.parent / LATENCIES).is_file():
            samples = read_samples(path.parent / LATENCIES)
        if (path.parent / TIMELINE).is_file():
            timeline = (path.parent / TIMELINE).read_text()
    except (OSError, ValueError, KeyError) as exc:
        raise ResultFileError(f"{path.parent / LATENCIES}: unreadable ({exc})") from None
    result = Result.from_json(data, samples, timeline, where=str(path))
    _check_samples(result, path.parent / LATENCIES)
    return result


def _check_samples(result: Result, path: Path) -> None:
    """A latencies.csv cut short (or replaced) disagrees with the summary that counted it: never trusted."""
    for stats, found in ((result.latency, result.samples and result.samples.latencies_ns),
                         (result.latency_model, result.samples and result.samples.model_latencies_ns)):  # fmt: skip
        if stats is not None and len(found or ()) != stats.n:
            raise ResultFileError(f"{path}: holds {len(found or ())} samples, its summary.json counts {stats.n}; measure again with --force")


def read_result(directory: Path) -> Result | None:
    """Like ``load_result``, but None when there is nothing readable."""
    try:
        return load_result(directory)
    except ResultFileError:
        return None


def is_complete(directory: Path, fingerprint: str) -> Result | None:
    """The result of a finished, valid experiment measured with the same settings (resume keeps it), else None."""
    result = read_result(directory)
    if result is None or not result.is_valid or result.fingerprint != fingerprint or result.latency is None:
        return None
    if result.samples is None or len(result.samples.latencies_ns) != result.latency.n:
        return None
    return result


def experiment_folders(root: Path) -> list[Path]:
    """The folders under ``root`` that hold one experiment's result, in a stable order: not one process of a
    --repeats run (its experiment pools them), the cache, or a child's staging folder (hidden)."""
    root = Path(root)
    folders = []
    for path in sorted(root.rglob(SUMMARY)):
        parts = path.relative_to(root).parts[:-1]
        if not {REPEATS_DIR, TUNING_DIR, SEARCH_DIR, "cache"} & set(parts) and not any(p.startswith(".") for p in parts):
            folders.append(path.parent)
    return folders


def tuning_folders(root: Path) -> list[Path]:
    """The folders of the configurations ``--tune`` tried, under ``root``, in a stable order."""
    root = Path(root)
    return [path.parent for path in sorted(root.rglob(f"{TUNING_DIR}/*/{SUMMARY}"))
            if not any(p.startswith(".") or p == "cache" for p in path.relative_to(root).parts[:-1])]  # fmt: skip


def load_results(root: Path, tuning: bool = False) -> list[Result]:
    """Every experiment's result under ``root`` (one model's folder or a whole results folder), in a stable
    order; with ``tuning``, the configurations ``--tune`` tried instead (status "tuning"). Unreadable or
    foreign files are skipped with a warning naming them, never a traceback."""
    results = []
    for folder in tuning_folders(root) if tuning else experiment_folders(root):
        try:
            results.append(load_result(folder))
        except ResultFileError as exc:
            warnings.warn(f"skipped: {exc}", stacklevel=2)
    return results


def csv_text(rows: list[dict], columns: list[str]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()
