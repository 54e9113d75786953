"""Child-process experiments, --repeats, and the artifact cache, on the tiny fixture models."""

import csv
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from framework.artifacts.cache import cached_build, is_current
from framework.cli import main
from framework.results.store import load_results
from tests.conftest import FIXTURE_MODELS

FAST = ["--models-dir", str(FIXTURE_MODELS), "--iterations", "5", "--warmup", "1", "--min-duration", "0", "--quiet"]


def test_isolated_and_in_process_runs_record_the_same_experiment(tmp_path):
    for mode, extra in (("isolated", []), ("in_process", ["--in-process"])):
        assert main(["run", "tiny_two_inputs", "--output", str(tmp_path / mode), "--engines", "onnxruntime-cpu,pytorch-cpu", *FAST, *extra]) == 0
    isolated, in_process = (sorted(load_results(tmp_path / m), key=lambda r: r.experiment.engine) for m in ("isolated", "in_process"))
    for a, b in zip(isolated, in_process):
        assert (a.experiment, a.status, a.validity) == (b.experiment, "ok", "valid")
        assert a.isolated is True and b.isolated is False
        assert a.agreement.worst.max_abs_error == pytest.approx(b.agreement.worst.max_abs_error, abs=1e-6)
        assert a.experiment.folder(tmp_path / "isolated").joinpath("job.json").exists()
        assert b.experiment.folder(tmp_path / "in_process").joinpath("job.json").exists() is False
    assert isolated[0].latency.n >= 5 and len(isolated[0].samples.latencies_ns) == isolated[0].latency.n


def test_repeats_run_k_processes_and_keep_each_ones_median(tmp_path):
    assert main(["run", "tiny_cnn", "--output", str(tmp_path), "--engines", "onnxruntime-cpu,pytorch-cpu", "--repeats", "3", *FAST]) == 0
    results = load_results(tmp_path)
    assert len(results) == 2  # the per-process summaries under repeats/ are not experiments of their own
    for result in results:
        assert result.repeats == 3 and len(result.process_medians_ms) == 3
        folder = result.experiment.folder(tmp_path)
        assert result.latency.n == sum(json.loads((folder / "repeats" / str(k) / "summary.json").read_text())["latency"]["n"] for k in range(3))
        with open(folder / "latencies.csv") as handle:
            rows = list(csv.DictReader(handle))
        assert len(rows) == result.latency.n and {r["process"] for r in rows} == {"0", "1", "2"}
        assert set(result.samples.processes) == {0, 1, 2}
    assert main(["run", "tiny_cnn", "--output", str(tmp_path / "x"), "--repeats", "2", "--in-process", *FAST]) == 2


def test_artifact_cache_reuses_rebuilds_on_change_and_on_corruption(tmp_path):
    builds = []

    def build(path):
        builds.append(path)
        path.write_bytes(b"artifact" * 100)
        return {"build_s": 1.5}

    target = tmp_path / "model.onnx"
    assert cached_build(target, {"weights": "a", "opset": 17}, build) == ({"build_s": 1.5}, False, "not cached")
    assert cached_build(target, {"weights": "a", "opset": 17}, build) == ({"build_s": 1.5}, True, "reused from cache")
    assert cached_build(target, {"weights": "b", "opset": 17}, build)[2] == "rebuilding: weights changed"
    target.write_bytes(b"artifact")  # truncated
    with pytest.warns(UserWarning, match="does not match its recorded hash"):
        assert cached_build(target, {"weights": "b", "opset": 17}, build)[1] is False
    assert len(builds) == 3 and is_current(target, {"weights": "b", "opset": 17}) == (True, "reused from cache")


def test_export_cache_key_follows_the_weights(tmp_path):
    """The same model again reuses its export; new weights (same config) re-export and are measured again."""
    plugins = tmp_path / "plugins"
    shutil.copytree(FIXTURE_MODELS / "tiny_cnn", plugins / "tiny_cnn")
    out = tmp_path / "out"
    args = ["run", "tiny_cnn", "--output", str(out), "--engines", "onnxruntime-cpu", "--models-dir", str(plugins), *FAST[2:]]
    summary = out / "tiny_cnn" / "16x16x3" / "onnxruntime-cpu__fp32__bs1" / "summary.json"
    assert main(args) == 0
    meta = out / "tiny_cnn" / "cache" / "16x16x3" / "model.onnx.meta.json"
    first = json.loads(meta.read_text())
    assert main([*args, "--force"]) == 0
    assert json.loads(meta.read_text()) == first and json.loads(summary.read_text())["export"]["export_from_cache"] is True
    load = plugins / "tiny_cnn" / "load.py"
    load.write_text(load.read_text().replace("torch.manual_seed(0)", "torch.manual_seed(1)"))
    assert main(args) == 0  # no --force: the fingerprint changed with the weights
    second = json.loads(meta.read_text())
    assert second["settings"]["model_sha256"] != first["settings"]["model_sha256"]
    assert json.loads(summary.read_text())["export"]["export_from_cache"] is False


def test_latency_columns_of_different_lengths_are_all_kept(tmp_path):
    """GPU engines time latency-all and latency-model in two loops whose sample counts differ."""
    from framework.files import write_atomic
    from framework.results.record import Samples
    from framework.results.store import latencies_csv, read_samples

    path = tmp_path / "latencies.csv"
    for samples in (Samples((1_000_000, 2_000_000, 3_000_123), (500_000,)), Samples((1_000_000,), (500_000, 600_001))):
        write_atomic(path, latencies_csv(samples))
        assert read_samples(path) == samples  # nanoseconds survive the file exactly


def test_new_dataset_labels_make_earlier_results_stale(tmp_path):
    """Accuracy depends on the data: a resumed run measures again when the dataset changed."""
    plugins = tmp_path / "plugins"
    shutil.copytree(Path(__file__).resolve().parent.parent / "models" / "digits_cnn", plugins / "digits_copy")
    for name in ("config.yaml", "load.py"):  # another name: the project's own digits_cnn is found too
        path = plugins / "digits_copy" / name
        path.write_text(path.read_text().replace("digits_cnn", "digits_copy"))
    args = ["run", "digits_copy", "--output", str(tmp_path / "out"), "--engines", "onnxruntime-cpu", "--models-dir", str(plugins),
            "--iterations", "5", "--warmup", "1", "--min-duration", "0", "--quiet"]  # fmt: skip
    assert main(args) == 0
    summary = tmp_path / "out" / "digits_copy" / "8x8x1" / "onnxruntime-cpu__fp32__bs1" / "summary.json"
    before = json.loads(summary.read_text())["accuracy"]["top1"]
    data = dict(np.load(plugins / "digits_copy" / "data.npz"))
    data["test_labels"] = (data["test_labels"] + 1) % 10  # every label wrong
    np.savez_compressed(plugins / "digits_copy" / "data.npz", **data)
    assert main(args) == 0
    assert before > 0.95 and json.loads(summary.read_text())["accuracy"]["top1"] < 0.05


def _start_grandchild_and_hang(pid_file: str) -> None:
    """A child that starts a process of its own (as torch.compile starts compile workers) and then hangs."""
    import subprocess
    import time

    worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    Path(pid_file).write_text(str(worker.pid))
    time.sleep(300)


def test_a_timed_out_child_takes_the_processes_it_started_with_it(tmp_path):
    from framework.sweep.isolation import run_child

    pid_file = tmp_path / "worker.pid"
    started = time.monotonic()
    assert run_child(_start_grandchild_and_hang, (str(pid_file),), 8.0, "experiment") is None  # timed out, killed
    assert time.monotonic() - started < 60
    worker = int(pid_file.read_text())
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _alive(worker):
        time.sleep(0.1)
    assert not _alive(worker), "the child's own process outlived it"


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ")[1][0] != "Z"  # a zombie waits for init to reap it: it is dead
    except FileNotFoundError:
        return False


MAIN_WITH_A_MARK = """
import sys, time
with open(sys.argv[1], "a") as mark:
    mark.write("main ran\\n")
if __name__ == "__main__":
    from framework.sweep.isolation import run_child
    for rerun_main in (False, True):
        assert run_child(time.sleep, (0,), 120.0, "experiment", rerun_main) == 0
        print(open(sys.argv[1]).read().count("main ran"))
"""


def test_a_child_runs_the_parents_main_again_only_when_asked(tmp_path):
    """A Ray worker's children skip its __main__ (Ray's default_worker.py, which imports Ray: ~0.5 s each)."""
    import subprocess

    script = tmp_path / "main_with_a_mark.py"
    script.write_text(MAIN_WITH_A_MARK)
    done = subprocess.run([sys.executable, str(script), str(tmp_path / "mark")], check=False, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["1", "2"]  # rerun_main=False: only the parent ran it; True: the child ran it too
