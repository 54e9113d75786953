"""Resource sampling, every plot and the report, rebuilt from saved data: files opened and looked at."""

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from framework.cli import main
from framework.measure.monitor import other_processes_warning, waiting_ancestors
from framework.results.store import write_json, write_latencies
from tests.conftest import FIXTURE_MODELS

REPO = Path(__file__).resolve().parents[1]

CPU_PLOTS = ["cpu_time_measurements.jpg", "cpu_mb_measurements.jpg", "cpu_pct_util_measurements.jpg", "latency_bars.jpg",
             "throughput_vs_batch.jpg", "accuracy_vs_latency.jpg"]  # fmt: skip
GPU_PLOTS = ["cuda_time_measurements.jpg", "gpu_0_mb_measurements.jpg", "gpu_0_pct_util_measurements.jpg"]


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
    done = subprocess.run([sys.executable, "-c", SYNTHETIC_LOAD], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    summary, rss = result["summary"], [row[1] for row in result["rows"]]
    assert summary["samples"] >= 30 and "gpu_util_pct" not in result["columns"]
    assert max(rss) - rss[0] >= 150, f"RSS rose by {max(rss) - rss[0]:.0f} MB only"
    assert summary["peak_cpu_pct"] >= 70 and summary["warnings"] == []
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
        done = subprocess.run([sys.executable, "-c", SAMPLE_IN_CHILD], capture_output=True, text=True, timeout=120, cwd=REPO)
    finally:
        sibling.kill()
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout.splitlines()[-1])
    assert summary["peak_process_gpu_mem_mb"] >= 256 and summary["sm_clock_max_mhz"] > 0
    assert list(summary["other_gpu_processes"]) == [str(sibling.pid)], summary["other_gpu_processes"]
    assert summary["other_gpu_processes"][str(sibling.pid)] >= 256
    assert any(f"PID {sibling.pid} (" in w for w in summary["warnings"]), summary["warnings"]
    assert parent_block.sum().item() == parent_block.numel()


def add_gpu_experiment(model_dir):
    """A GPU experiment as a GPU run saves it (latency-all and latency-model, an NVML timeline), so the GPU
    figures are drawn and checked on a machine without a GPU."""
    folder = model_dir / "16x16x3" / "pytorch-cuda__fp16__bs1"
    rng = np.random.default_rng(0)
    write_latencies(folder / "latencies.csv", [int(v) for v in 1.2e6 + 2e4 * rng.standard_normal(300)],
                    [int(v) for v in 0.9e6 + 1e4 * rng.standard_normal(280)])  # fmt: skip
    t = np.arange(-0.2, 1.0, 0.02)
    rows = ["t_s,rss_mb,cpu_pct,gpu_util_pct,gpu_mem_used_mb,process_gpu_mem_mb,sm_clock_mhz,temperature_c,power_w,clock_event_reasons"]
    rows += [f"{x:.3f},900,100,{80 + 5 * np.sin(x)},2100,1500,1980,45,300,0" for x in t]
    (folder / "resources.csv").write_text("\n".join(rows) + "\n")
    latency = {"n": 300, "mean_ms": 1.2, "median_ms": 1.2, "max_ms": 1.3, "median_ci99_low_ms": 1.19, "median_ci99_high_ms": 1.21,
               "throughput_items_per_s": 830.0, "cv": 0.02, "timed_region_s": 1.0}  # fmt: skip
    write_json(folder / "summary.json", {
        "model": "tiny_cnn", "shape_tag": "16x16x3", "engine": "pytorch-cuda", "device": "cuda", "precision": "fp16", "batch_size": 1,
        "status": "ok", "validity": "valid", "invalid_reasons": [], "warnings": [], "latency": latency,
        "latency_model": {**latency, "mean_ms": 0.9, "median_ms": 0.9, "max_ms": 0.95, "median_ci99_low_ms": 0.89,
                          "median_ci99_high_ms": 0.91, "throughput_items_per_s": 1100.0},
        "agreement": {"worst": {"cosine_similarity": 0.99995, "max_abs_error": 1e-3, "has_nan_or_inf": False}},
        "resources": {"peak_process_gpu_mem_mb": 1500, "cuda_context_mb": 500, "peak_rss_mb": 900, "rss_before_load_mb": 700},
    })  # fmt: skip


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    assert main(["run", "tiny_cnn", "--models-dir", str(FIXTURE_MODELS), "--output", str(out), "--batch-sizes", "1,4",
                 "--precisions", "fp32,int8", "--iterations", "20", "--warmup", "2", "--min-duration", "0.2", "--quiet"]) == 0  # fmt: skip
    add_gpu_experiment(out / "tiny_cnn")
    return out


def check_image(path):
    with Image.open(path) as image:
        assert image.format == "JPEG", path
        assert image.size[0] >= 700 and image.size[1] >= 350, (path, image.size)
        pixels = np.asarray(image.convert("L"), dtype=float)
    assert pixels.std() > 10, f"{path.name} is blank"


def test_plot_and_report_rebuild_every_file_from_saved_data(results, capsys):
    plots = results / "tiny_cnn" / "plots" / "16x16x3"
    for old in plots.glob("*.jpg"):
        old.unlink()
    assert main(["plot", "tiny_cnn", "--output", str(results)]) == 0
    assert sorted(p.name for p in plots.glob("*.jpg")) == sorted(CPU_PLOTS + GPU_PLOTS)
    for path in plots.glob("*.jpg"):
        check_image(path)
    assert main(["report", "tiny_cnn", "--output", str(results)]) == 0
    assert "report: " in capsys.readouterr().out


def test_report_lists_every_experiment_and_links_every_plot(results):
    assert main(["report", "tiny_cnn", "--output", str(results)]) == 0
    model_dir = results / "tiny_cnn"
    text = (model_dir / "report.md").read_text()
    experiments = [json.loads(p.read_text()) for p in model_dir.rglob("summary.json")]
    assert len(experiments) == 9  # 2 engines x 2 precisions x 2 batches (pytorch-cpu int8 skipped) + the GPU one
    for record in experiments:
        section = text.split(f"### Batch size {record['batch_size']}")[1].split("###")[0]
        assert f"| {record['engine']} | {record['precision']} |" in section
    assert "skipped: pytorch-cpu does not run int8" in text
    environment = json.loads((model_dir / "environment.json").read_text())
    assert ("This CPU has no VNNI: its int8 graph for ONNX Runtime CPU quantizes weights to 7 bits" in text) is environment["cpu_int8_saturates"]
    engines = environment["engines"]
    assert engines["onnxruntime-cpu"] is None and engines["pytorch-cpu"] is None
    missing = [name for name, why in engines.items() if why]
    if missing:  # this machine's absent engines are named with their reason, not silently left out
        line = next(line for line in text.splitlines() if line.startswith("Engines this machine cannot run"))
        assert all(f"{name} ({engines[name]})" in line for name in missing)
    assert "| pytorch-cuda | fp16 | valid | 1.200 / 1.300 | 0.900 / 0.950 |" in text and "| 1,500 (500) |" in text
    links = re.findall(r"!\[[^\]]*\]\((plots/[^)]+)\)", text)
    assert sorted(link.rsplit("/", 1)[1] for link in links) == sorted(CPU_PLOTS + GPU_PLOTS)
    assert all((model_dir / link).exists() for link in links)
    page = (model_dir / "report.html").read_text()
    assert page.count('src="data:image/jpeg;base64,') == len(links) and page.count("<table>") == 2
    assert "<td>onnxruntime-cpu</td><td>int8</td>" in page


def test_report_of_a_model_never_measured_is_refused(tmp_path, capsys):
    assert main(["report", "ghost", "--output", str(tmp_path)]) == 2
    assert "no saved experiments in" in capsys.readouterr().err
