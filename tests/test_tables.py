"""The tables (``results.tables``) on results built here: numeric order, rows that were not measured, warnings
as footnotes, the speedup against the baseline, items/s from the median, the report's columns, and files
that others can read."""

from __future__ import annotations

import csv
import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest

from framework.results.record import Result
from framework.results.store import TUNING_DIR, save_result
from framework.results.tables import (
    CSV,
    PROGRESS,
    REPORT,
    SUMMARY,
    columns,
    configuration_text,
    footnoted_table,
    markdown_table,
    model_speedups,
    progress_text,
    shape_key,
    sort_key,
    summary_markdown,
    write_model_tables,
)
from tests.test_figures import MODEL, make_result, save_all

REPO = Path(__file__).resolve().parent.parent
NAMES = ("engine", "precision", "batch", "configuration", "result", "notes")  # the cells that name a row


def cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def rows_of(lines: list[str], view: str) -> list[dict[str, str]]:
    headers = [c.header for c in columns(view)]
    assert cells(lines[0]) == headers
    return [dict(zip(headers, cells(line))) for line in lines[2:]]


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open() as handle:
        return list(csv.DictReader(handle))


def test_shapes_sort_by_their_numbers_and_batch_sizes_as_integers():
    assert sorted(["224x224x3", "32x32x3", "28x28x1", "8x8x1"], key=shape_key) == ["8x8x1", "28x28x1", "32x32x3", "224x224x3"]
    assert sorted(["1x128_1x256", "1x128_1x32", "1x64"], key=shape_key) == ["1x64", "1x128_1x32", "1x128_1x256"]
    results = [make_result("pytorch-cpu", "fp32", batch, shape=shape) for shape in ("224x224x3", "32x32x3") for batch in (256, 32, 1, 2)]
    results.append(make_result("onnxruntime-cpu", "fp32", 2, shape="32x32x3"))
    results.append(make_result("onnxruntime-cpu", "fp16", 2, shape="32x32x3"))
    order = [(r.experiment.shape_tag, r.experiment.batch_size, r.experiment.engine, r.experiment.precision) for r in sorted(results, key=sort_key)]
    assert order[:6] == [("32x32x3", 1, "pytorch-cpu", "fp32"), ("32x32x3", 2, "onnxruntime-cpu", "fp32"),
                         ("32x32x3", 2, "onnxruntime-cpu", "fp16"), ("32x32x3", 2, "pytorch-cpu", "fp32"),
                         ("32x32x3", 32, "pytorch-cpu", "fp32"), ("32x32x3", 256, "pytorch-cpu", "fp32")]  # fmt: skip
    assert [o[1] for o in order[6:]] == [1, 2, 32, 256] and {o[0] for o in order[6:]} == {"224x224x3"}
    text = summary_markdown(results)
    assert text.index("## shape 32x32x3") < text.index("## shape 224x224x3")
    section = text.split("## shape 32x32x3")[1].split("## shape")[0]
    batches = [row["batch"] for row in rows_of([line for line in section.splitlines() if line.startswith("|")], SUMMARY)]
    assert batches == ["1", "2", "2", "2", "32", "256"]


def half_measured_failure() -> Result:
    """Failed after the build and the timed loop: it still carries figures, which no table may show."""
    measured = make_result("onnxruntime-cpu", "int8", 1, warnings=("drift in latency",))
    return dataclasses.replace(measured, status="failed", reason="outputs contain NaN or Inf", build_s=0.5, first_inference_ms=3.0)


@pytest.mark.parametrize("view", [SUMMARY, REPORT])
def test_a_row_that_was_not_measured_shows_its_status_and_reason_and_no_figure(view):
    results = [half_measured_failure(), make_result("pytorch-cpu", "int8", 1, status="skipped"), make_result("pytorch-cpu", "fp32", 1)]
    table, notes = footnoted_table(results, view, model_speedups(Path("/nonexistent"), results))
    failed, skipped, ok = rows_of(table, view)
    assert failed["result"] == "failed: outputs contain NaN or Inf" and skipped["result"] == "skipped: pytorch-cpu does not run int8"
    for row in (failed, skipped):
        assert {k: v for k, v in row.items() if k not in NAMES} == {k: "n/a" for k in row if k not in NAMES}, row
    assert failed["notes"] == "[1]" and notes == ["- [1] drift in latency"]  # a warning is still told
    assert ok["result"] == "valid" and ok["median ms (99% CI)"].startswith(f"{results[2].latency.median_ms:.3f} (")
    assert ok["speedup (99% CI)"].startswith("1.00x [")  # the baseline itself
    assert "n/a%" not in "\n".join(table)
    assert progress_text(results[0]) == "FAILED: outputs contain NaN or Inf"


def test_warnings_are_numbered_footnotes_shared_across_the_table():
    drift, busy = "drift in latency: +17% | beyond ±1%", "other processes used 88% of a core"
    results = [make_result("onnxruntime-cpu", "fp32", 1, warnings=(drift, busy)), make_result("pytorch-cpu", "fp32", 1),
               make_result("pytorch-cpu", "fp32", 2, warnings=(busy,)),
               make_result("onnxruntime-cpu", "fp16", 2, warnings=(busy, drift))]  # fmt: skip
    for view in (SUMMARY, REPORT):
        table, notes = footnoted_table(results, view)
        rows = rows_of(table, view)
        assert [row["notes"] for row in rows] == ["[1] [2]", "", "[2]", "[2] [1]"]
        assert [row["result"] for row in rows] == ["valid"] * 4  # no warning inline
        assert notes == ["- [1] drift in latency: +17% / beyond ±1%", "- [2] other processes used 88% of a core"]
        assert all(len(cells(line)) == len(columns(view)) for line in table)  # the pipe did not split a cell
    assert markdown_table(results, REPORT) == footnoted_table(results, REPORT)[0] + [""] + notes
    assert footnoted_table(results[1:2], REPORT)[1] == []


def test_summary_files_keep_full_warnings_and_list_footnotes_under_each_table(tmp_path):
    warning = "two modes in latency: samples cluster near 0.016 ms and 0.021 ms"
    model_dir = save_all(tmp_path, [make_result("pytorch-cpu", "fp32", 1, warnings=(warning, "drift")), make_result("pytorch-cpu", "fp32", 2)])
    write_model_tables(model_dir)
    assert [row["warnings"] for row in read_csv(model_dir / "summary.csv")] == [f"{warning}; drift", ""]
    text = (model_dir / "summary.md").read_text()
    assert f"- [1] {warning}\n- [2] drift\n" in text and text.count(warning) == 1


def save_baseline_case(tmp_path: Path) -> Path:
    """PyTorch fp32 tuned to {"compile": "default"} (1 ms, the full result), its eager configuration kept by
    --tune (2 ms, status tuning), ONNX Runtime 0.5 ms: eager is the default baseline, found among the tried ones."""
    tuned = dataclasses.replace(make_result("pytorch-cpu", "fp32", 4, median_ms=1.0), configuration={"compile": "default"},
                                tuning={"chosen": "compile=default", "tried": ["default", "compile=default"]})  # fmt: skip
    eager = dataclasses.replace(make_result("pytorch-cpu", "fp32", 4, median_ms=2.0, seed=1), status="tuning", tuning={"label": "default"})
    model_dir = save_all(tmp_path, [tuned, make_result("onnxruntime-cpu", "fp32", 4, median_ms=0.5, seed=2)])
    save_result(tuned.experiment.folder(tmp_path) / TUNING_DIR / "default", eager)
    return model_dir


def test_speedup_against_the_eager_baseline_in_the_csv_and_the_tables(tmp_path):
    model_dir = save_baseline_case(tmp_path)
    results = write_model_tables(model_dir)
    rows = {row["engine"]: row for row in read_csv(model_dir / "summary.csv")}
    assert {name: float(rows[name]["speedup"]) for name in rows} == pytest.approx({"onnxruntime-cpu": 4.0, "pytorch-cpu": 2.0}, rel=0.02)
    for row in rows.values():
        assert float(row["speedup_ci99_low"]) < float(row["speedup"]) < float(row["speedup_ci99_high"]) < 1.02 * float(row["speedup"])
        assert row["baseline"] == "pytorch-cpu fp32 (default options)"
    assert rows["pytorch-cpu"]["configuration"] == "compile=default" and rows["onnxruntime-cpu"]["configuration"] == "default"
    text = (model_dir / "summary.md").read_text()
    assert "| 4.0" in text and "x [" in text and "Speedup: the median of pytorch-cpu fp32" in text
    report = {row["engine"]: row for row in rows_of(footnoted_table(results, REPORT, model_speedups(model_dir, results))[0], REPORT)}
    assert report["onnxruntime-cpu"]["speedup (99% CI)"].startswith(("3.9", "4.0")) and report["pytorch-cpu"]["configuration"] == "compile=default"


def test_a_named_baseline_replaces_the_default(tmp_path):
    model_dir = save_baseline_case(tmp_path)
    write_model_tables(model_dir, baseline=("onnxruntime-cpu", "fp32"))
    rows = {row["engine"]: row for row in read_csv(model_dir / "summary.csv")}
    ratios = {name: float(row["speedup"]) for name, row in rows.items()}
    assert ratios == pytest.approx({"pytorch-cpu": 0.5, "onnxruntime-cpu": 1.0}, rel=0.02)
    assert {row["baseline"] for row in rows.values()} == {"onnxruntime-cpu fp32 (default options)"}
    write_model_tables(model_dir, baseline=("onnxruntime-cpu", "fp16"))  # not measured: no speedup, no error
    assert {(row["speedup"], row["baseline"]) for row in read_csv(model_dir / "summary.csv")} == {("", "")}


def test_items_per_s_come_from_the_headline_median_and_wall_time_is_labelled():
    gpu = make_result("pytorch-cuda", "fp16", 8, median_ms=1.0, model_ms=0.5)
    rows = rows_of(footnoted_table([gpu], REPORT)[0], REPORT)
    assert rows[0]["items/s"] == f"{8 * 1000 / gpu.latency_model.median_ms:,.1f}" and 15_000 < 8000 / gpu.latency_model.median_ms < 17_000
    assert rows[0]["median ms (99% CI)"].startswith(f"{gpu.latency_model.median_ms:.3f} (")
    summary = rows_of(footnoted_table([gpu], SUMMARY)[0], SUMMARY)[0]
    assert summary["items/s (wall time)"] == f"{gpu.latency.throughput_items_per_s:,.1f}" != summary["items/s"]
    line = progress_text(gpu)
    assert f"items/s {8000 / gpu.latency_model.median_ms:,.1f}" in line and f"items/s (wall time) {gpu.latency.throughput_items_per_s:,.1f}" in line
    assert f"latency-all median ms {gpu.latency.median_ms:.3f}" in line and "latency-all" not in progress_text(make_result("pytorch-cpu", "fp32", 1))
    assert "items/s (wall time)" not in [c.header for c in columns(REPORT)]


def test_the_report_view_is_what_a_reader_needs_and_the_csv_keeps_the_rest():
    assert [c.header for c in columns(REPORT)] == ["engine", "precision", "configuration", "median ms (99% CI)", "items/s", "speedup (99% CI)",
                                                   "accuracy / agreement", "size MB", "peak memory MB", "result", "notes"]  # fmt: skip
    names = [c.name for c in columns(CSV)]
    assert len(names) == len(set(names))
    assert {"warnings", "speedup", "speedup_ci99_low", "speedup_ci99_high", "baseline", "items_per_s", "throughput_items_per_s",
            "configuration", "compile_s", "p99_ms", "parameters"} <= set(names)  # fmt: skip
    assert not {c.name for c in columns(PROGRESS)} & {"speedup_text", "notes"}  # a progress line has no table around it
    options = {"cuda_graph": True, "compile": "default"}
    gpu = dataclasses.replace(make_result("pytorch-cuda", "fp16", 1, model_ms=0.5, top1=0.9), configuration=options)
    row = rows_of(footnoted_table([gpu], REPORT)[0], REPORT)[0]
    assert row["configuration"] == "cuda_graph=true, compile=default" == configuration_text(gpu)
    assert row["accuracy / agreement"] == "top-1 90.0%, cosine 0.999990" and row["peak memory MB"] == "RSS 900 (engine +200); GPU 1,500 (context 500)"
    assert configuration_text(make_result("pytorch-cpu", "fp32", 1)) == "default"


PERMISSIONS = """
import os, sys
from pathlib import Path
from framework.report.publish import publish
from tests.test_figures import make_result, save_all
model_dir = save_all(Path(sys.argv[1]), [make_result("pytorch-cpu", "fp32", 1), make_result("onnxruntime-cpu", "fp32", 1, seed=1)])
publish(model_dir)
"""


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o027, 0o640)])
def test_files_written_are_readable_as_the_umask_allows(tmp_path, umask, mode):
    done = subprocess.run([sys.executable, "-c", PERMISSIONS, str(tmp_path)], cwd=REPO, capture_output=True, text=True, timeout=300,
                          check=False, preexec_fn=lambda: os.umask(umask))  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    written = {path.relative_to(tmp_path).as_posix(): path.stat().st_mode & 0o777 for path in tmp_path.rglob("*") if path.is_file()}
    names = {name.rsplit("/", 1)[-1] for name in written}
    assert {"summary.json", "latencies.csv", "summary.csv", "summary.md", "report.md", "report.html", "latency_bars.jpg"} <= names
    assert {name: m for name, m in written.items() if m != mode} == {}, f"expected {mode:o}"
    assert MODEL in {name.split("/", 1)[0] for name in written}
