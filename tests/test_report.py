"""Resource sampling, every plot and the report, rebuilt from saved data: files opened and looked at."""

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from framework.errors import DeployBenchError
from framework.files import write_json
from framework.measure.monitor import other_processes_warning, waiting_ancestors
from framework.report.figures import FIGURES
from framework.report.publish import publish
from tests.test_figures import check_jpeg, make_result, save_all

REPO = Path(__file__).resolve().parents[1]

CPU_PLOTS = ["cpu_time_measurements.jpg", "cpu_mb_measurements.jpg", "cpu_pct_util_measurements.jpg", "latency_bars.jpg",
             "throughput_vs_batch.jpg", "accuracy_vs_latency.jpg", "speedup.jpg"]  # fmt: skip
GPU_PLOTS = ["cuda_time_measurements.jpg", "gpu_0_mb_measurements.jpg", "gpu_0_pct_util_measurements.jpg"]
BATCHES = (1, 32, 256)  # numeric order differs from text order (1, 256, 32)


SYNTHETIC_LOAD = """
import json, time
import numpy as np
from framework.measure.monitor import ResourceSampler
with ResourceSampler(interval_s=0.01) as sampler:
    time.sleep(0.1)
    ballast = np.ones(200 * 2**20 // 8)  # 200 MB, touched
    end = time.perf_counter() + 0.5
    while time.perf_counter() < end:  # one busy core
        pass
assert ballast[-1] == 1.0
print(json.dumps({"summary": sampler.summary(), "columns": sampler.columns, "rows": sampler.rows,
                  "csv": sampler.to_csv(sampler.rows[0][0])}))
"""


def test_sampler_sees_a_synthetic_cpu_and_memory_load():
    """In a fresh process: the sampler counts children's RSS too, and the fork servers earlier tests leave
    behind (~700 MB of mostly file-backed pages) can shrink under the ballast's memory pressure."""
    done = subprocess.run([sys.executable, "-c", SYNTHETIC_LOAD], capture_output=True, text=True, timeout=120, cwd=REPO, check=False)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    summary, rss = result["summary"], [row[1] for row in result["rows"]]
    assert summary["samples"] >= 30 and "gpu_util_pct" not in result["columns"]
    assert max(rss) - rss[0] >= 150, f"RSS rose by {max(rss) - rss[0]:.0f} MB only"
    assert summary["peak_cpu_pct"] >= 70 and summary["other_cpu_pct"] >= 0
    assert [w for w in summary["warnings"] if not w.startswith("other processes used")] == []  # those depend on the machine
    lines = result["csv"].splitlines()
    assert lines[0] == "t_s,rss_mb,cpu_pct" and lines[1].startswith("0.0000,") and len(lines) == summary["samples"] + 1


def test_other_gpu_processes_are_named_and_this_runs_ancestors_are_not_counted():
    assert {os.getpid(), os.getppid()} <= waiting_ancestors()
    assert other_processes_warning({}) is None
    sleeper = subprocess.Popen(["sleep", "30"])
    deadline = time.monotonic() + 10
    while Path(f"/proc/{sleeper.pid}/cmdline").read_bytes() != b"sleep\x0030\x00" and time.monotonic() < deadline:
        time.sleep(0.01)  # between fork and exec the child still shows its parent's command line
    gone = next(pid for pid in range(4_000_000, 4_100_000) if not os.path.exists(f"/proc/{pid}"))
    try:
        warning = other_processes_warning({sleeper.pid: 2048.4, gone: 512})
    finally:
        sleeper.kill()
    assert warning == (f"other processes held the GPU during the timed loop and may have used it: "
                       f"PID {sleeper.pid} (sleep 30, 2,048 MB); PID {gone} (not visible from here, 512 MB)")  # fmt: skip


HOLD_GPU = "import sys, time, torch; x = torch.ones(2**26, device='cuda'); print('ready', flush=True); time.sleep(float(sys.argv[1]))"
SAMPLE_IN_CHILD = """
import json, time, torch
from framework.measure.monitor import ResourceSampler
with ResourceSampler(interval_s=0.01, gpu=True) as sampler:
    block = torch.ones(256 * 2**20 // 4, device="cuda")
    time.sleep(0.3)
print(json.dumps(sampler.summary()))
"""


@pytest.mark.gpu
def test_nvml_sampler_sees_its_memory_and_other_processes_but_not_its_waiting_parent():
    """This test process holds a CUDA context (the parent the sampler's process waits for: not counted); a
    sibling holding 256 MB is another process and is named."""
    import torch

    parent_block = torch.ones(2**20, device="cuda")
    sibling = subprocess.Popen([sys.executable, "-c", HOLD_GPU, "60"], stdout=subprocess.PIPE, text=True)
    try:
        assert sibling.stdout.readline().strip() == "ready"
        done = subprocess.run([sys.executable, "-c", SAMPLE_IN_CHILD], capture_output=True, text=True, timeout=120, cwd=REPO, check=False)
    finally:
        sibling.kill()
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout.splitlines()[-1])
    assert summary["peak_process_gpu_mem_mb"] >= 256 and summary["sm_clock_max_mhz"] > 0
    assert list(summary["other_gpu_processes"]) == [str(sibling.pid)], summary["other_gpu_processes"]
    assert summary["other_gpu_processes"][str(sibling.pid)] >= 256
    assert any(f"PID {sibling.pid} (" in w for w in summary["warnings"]), summary["warnings"]
    assert parent_block.sum().item() == parent_block.numel()


def sweep_results():
    """What a CPU run of two engines x two precisions x three batch sizes leaves (pytorch-cpu int8 skipped, one
    result INVALID), plus a GPU experiment as a GPU run saves it (latency-all and latency-model, an NVML
    timeline), so the GPU figures are drawn and checked on a machine without a GPU."""
    results = []
    for i, batch in enumerate(BATCHES):
        results += [make_result("pytorch-cpu", "fp32", batch, median_ms=0.5 + batch / 64, seed=i),
                    make_result("pytorch-cpu", "int8", batch, status="skipped"),
                    make_result("onnxruntime-cpu", "fp32", batch, median_ms=0.4 + batch / 80, seed=i + 10, cosine=0.9999999),
                    make_result("onnxruntime-cpu", "int8", batch, median_ms=0.3 + batch / 120, seed=i + 20, cosine=0.995,
                                validity="invalid" if batch == 256 else "valid")]  # fmt: skip
    host_bound = ("host-bound: the host issues work as slowly as the GPU runs it",)
    results.append(make_result("pytorch-cuda", "fp16", 1, median_ms=1.2, model_ms=0.9, seed=30, warnings=host_bound))
    return results


ENVIRONMENT = {"cpu_model": "Test CPU", "python": "3.12", "gpus": [], "packages": {"torch": "2.5"}, "cpu_int8_saturates": True,
               "engines": {"pytorch-cpu": None, "onnxruntime-cpu": None, "tensorrt": "the tensorrt package is not installed"}}  # fmt: skip


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    model_dir = save_all(tmp_path_factory.mktemp("report"), sweep_results())
    write_json(model_dir / "environment.json", ENVIRONMENT)
    return model_dir, publish(model_dir)


def test_publish_rebuilds_every_plot_table_and_page_from_saved_data(published):
    model_dir, done = published
    plots = model_dir / "plots" / "16x16x3"
    assert sorted(p.name for p in plots.glob("*.jpg")) == sorted(CPU_PLOTS + GPU_PLOTS) == sorted(p.name for p in done.plots)
    for path in done.plots:
        check_jpeg(path)
    assert (done.report_md, done.report_html) == (model_dir / "report.md", model_dir / "report.html") and done.experiments == 13
    assert done.tables == (model_dir / "summary.csv", model_dir / "summary.md") and all(p.is_file() for p in done.tables)
    assert len((model_dir / "summary.csv").read_text().splitlines()) == 14


def test_report_lists_every_experiment_and_links_every_plot(published):
    model_dir, _ = published
    text = (model_dir / "report.md").read_text()
    for result in sweep_results():
        e = result.experiment
        section = text.split(f"### Batch size {e.batch_size}\n")[1].split("###")[0]
        assert f"| {e.engine} | {e.precision} |" in section, e.name
    assert "skipped: pytorch-cpu does not run int8" in text and "INVALID: outputs disagree with PyTorch fp32" in text
    positions = [text.index(f"### Batch size {b}\n") for b in BATCHES]
    assert positions == sorted(positions), "batch sizes in numeric order"
    assert "This CPU has no VNNI: its int8 graph for ONNX Runtime CPU quantizes weights to 7 bits" in text
    assert "tensorrt (the tensorrt package is not installed)" in text and "Some GPU results are host-bound" in text
    details = text.split("## Shape")[2]  # the table of every result, after the verdict's
    gpu_row = next(line for line in details.splitlines() if line.startswith("| pytorch-cuda | fp16 | default |"))
    assert re.search(r"\| 0\.9\d\d \(\d\.\d{3}-\d\.\d{3}\) \|", gpu_row), gpu_row  # the headline: device time, with its CI
    assert gpu_row.endswith("| RSS 900 (engine +200); GPU 1,500 (context 500) | valid | [1] |"), gpu_row  # engine's own share, context
    assert "- [1] host-bound: the host issues work as slowly as the GPU runs it" in details  # warnings as footnotes
    links = re.findall(r"!\[([^\]]*)\]\((plots/[^)]+)\)", text)
    assert sorted(link.rsplit("/", 1)[1] for _, link in links) == sorted(CPU_PLOTS + GPU_PLOTS)
    captions = {f.filename: f.caption for f in FIGURES}
    assert all(caption == captions[link.rsplit("/", 1)[1]] for caption, link in links)
    assert [link.rsplit("/", 1)[1] for _, link in links] == [f.filename for f in FIGURES if f.filename in CPU_PLOTS + GPU_PLOTS]
    page = (model_dir / "report.html").read_text()
    assert page.count('src="data:image/jpeg;base64,') == len(links) and page.count("<table>") == 2 * len(BATCHES)  # verdict, details
    assert "<td>onnxruntime-cpu</td><td>int8</td>" in page


def test_a_figure_with_nothing_left_to_show_is_removed_and_not_linked(tmp_path):
    model_dir = save_all(tmp_path, sweep_results())
    publish(model_dir)
    gpu = make_result("pytorch-cuda", "fp16", 1)
    for name in ("summary.json", "latencies.csv", "resources.csv"):
        (gpu.experiment.folder(tmp_path) / name).unlink()
    done = publish(model_dir, keep_outliers=True, tables=False)
    assert sorted(p.name for p in done.plots) == sorted(CPU_PLOTS) and done.tables == ()
    assert not any((model_dir / "plots" / "16x16x3" / name).exists() for name in GPU_PLOTS)
    assert "cuda_time_measurements.jpg" not in (model_dir / "report.md").read_text()


def test_publish_without_report_writes_no_page(tmp_path):
    model_dir = save_all(tmp_path, [make_result("pytorch-cpu", "fp32", 1)])
    done = publish(model_dir, report=False)
    assert done.report_md is done.report_html is None and not (model_dir / "report.md").exists() and done.plots


def test_report_of_a_model_never_measured_is_refused(tmp_path):
    with pytest.raises(DeployBenchError, match="no saved experiments in"):
        publish(tmp_path / "ghost")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DeployBenchError, match="no saved experiments in"):
        publish(tmp_path / "empty")
