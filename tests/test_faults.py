"""Fault injection: each bad input or crash gives a clear error or a recorded failure, and what an earlier
run measured survives. Models are written into tmp folders from the tiny_cnn fixture with one fault each."""

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from framework.cli import main
from framework.locking import LOCK_NAME
from framework.results.store import load_result
from tests.conftest import FIXTURE_MODELS

FAST = ["--iterations", "3", "--warmup", "0", "--min-duration", "0", "--quiet"]
REPO = Path(__file__).resolve().parent.parent


def make_model(root: Path, name: str, forward: str = "return self.head(torch.relu(self.conv(image)).mean(dim=(2, 3)))",
               config_edit=lambda text: text, extra: str = "", inputs: str | None = None) -> Path:  # fmt: skip
    """A copy of tiny_cnn named ``name`` with its forward body (and optionally more) replaced."""
    folder = root / name
    folder.mkdir(parents=True)
    config = (FIXTURE_MODELS / "tiny_cnn" / "config.yaml").read_text().replace("name: tiny_cnn", f"name: {name}")
    (folder / "config.yaml").write_text(config_edit(config))
    load_inputs = f"\n    def load_example_inputs(self):\n        {inputs}\n" if inputs else ""
    (folder / "load.py").write_text(textwrap.dedent(f"""\
        import os, signal
        import numpy as np
        import torch
        from framework import ModelLoader, register_model
        {extra}

        class Net(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
                self.head = torch.nn.Linear(4, 5)

            def forward(self, image):
                {forward}

        @register_model
        class Loader(ModelLoader):
            name = {name!r}

            def load_pytorch_module(self):
                torch.manual_seed(0)
                return Net().eval()
        """) + load_inputs)  # fmt: skip
    return root


def run(models: Path, name: str, out: Path, *extra: str) -> int:
    return main(["run", name, "--models-dir", str(models), "--output", str(out), *FAST, *extra])


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    """One finished run of a healthy model: every test checks that it survives what the test breaks."""
    root = tmp_path_factory.mktemp("measured")
    models = make_model(root / "models", "healthy")
    assert run(models, "healthy", root / "out", "--engines", "onnxruntime-cpu", "--batch-sizes", "1,2") == 0
    return models, root / "out"


def snapshot(out: Path) -> dict:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*.json")) if "cache" not in p.parts}


@pytest.fixture
def earlier(measured, tmp_path):
    """A private copy of the finished run, and a check that its experiments are unchanged afterwards."""
    models, out = measured
    shutil.copytree(models, tmp_path / "models")
    shutil.copytree(out, tmp_path / "out")
    before = snapshot(tmp_path / "out" / "healthy")
    yield tmp_path / "models", tmp_path / "out"
    after = snapshot(tmp_path / "out" / "healthy")
    kept = {k: v for k, v in after.items() if k in before and k != "environment.json"}
    assert kept == {k: v for k, v in before.items() if k != "environment.json"}, "an earlier result was changed"


def records(out: Path, model: str) -> dict:
    found = {}
    for path in sorted((out / model).rglob("summary.json")):
        record = json.loads(path.read_text())
        parts = path.relative_to(out).parts
        if "engine" in record and "repeats" not in parts and not any(p.startswith(".") for p in parts):  # .incoming-*: a child's
            found[(record["engine"], record["precision"], record["batch_size"])] = record
    return found


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda t: t.replace("inputs:", "inputs: [", 1), "not valid YAML"),
        (lambda t: t.replace("      example: [16, 16, 3]\n", ""), "inputs[0].shapes.example: missing"),
        (
            lambda t: t.replace("example: [16, 16, 3]", "example: sixteen"),
            "inputs[0].shapes.example: expected a non-empty list of integers, got str 'sixteen'",
        ),
        (
            lambda t: t.replace("min: [1, 3, 8, 8]", "min: [1, 3, 99, 8]"),
            "inputs[0].shapes.optimization: dim 2 (height) needs min <= opt <= max, got 99, 16, 64",
        ),
    ],
    ids=["malformed-yaml", "missing-field", "wrong-type", "min-greater-than-max"],
)
def test_broken_config_is_refused_naming_file_and_field(earlier, capsys, edit, message):
    models, out = earlier
    config = models / "healthy" / "config.yaml"
    config.write_text(edit(config.read_text()))
    assert run(models, "healthy", out) == 2
    err = capsys.readouterr().err
    assert f"{config}: {message}" in err, err


def test_load_py_that_raises_on_import_is_reported_and_other_models_still_run(earlier, capsys):
    models, out = earlier
    (models / "broken").mkdir()
    (models / "broken" / "load.py").write_text("raise RuntimeError('weights server is down')\n")
    assert run(models, "broken", out) == 2
    assert "broken/load.py:1: import failed: RuntimeError: weights server is down" in capsys.readouterr().err
    assert run(models, "healthy", out, "--engines", "onnxruntime-cpu") == 0  # resumes: both kept


def test_load_py_without_a_registered_class(earlier, capsys):
    models, out = earlier
    (models / "unmarked").mkdir()
    (models / "unmarked" / "load.py").write_text("from framework import ModelLoader\nclass Loader(ModelLoader):\n    name = 'unmarked'\n")
    assert run(models, "unmarked", out) == 2
    assert "unmarked/load.py: no class decorated with @register_model" in capsys.readouterr().err


def test_duplicate_model_names_name_both_files(earlier, capsys):
    models, out = earlier
    shutil.copytree(models / "healthy", models / "healthy_copy")
    assert run(models, "healthy", out) == 2
    err = capsys.readouterr().err
    assert "two loaders register the model name 'healthy'" in err and "healthy_copy/load.py" in err


@pytest.mark.parametrize(
    "inputs, reason",
    [
        ("return [np.zeros((8, 8, 3), np.float32)]", "input 'image' has shape (8, 8, 3), expected example shape (16, 16, 3)"),
        ("return [np.full((16, 16, 3), 'x')]", "input 'image' has dtype <U1; expected numbers (the config says float32)"),
    ],
    ids=["wrong-shape", "wrong-dtype"],
)
def test_example_inputs_of_the_wrong_shape_or_dtype_fail_the_experiments(earlier, inputs, reason):
    models, out = earlier
    make_model(models, "bad_inputs", inputs=inputs)
    assert run(models, "bad_inputs", out, "--engines", "pytorch-cpu,onnxruntime-cpu") == 1
    for record in records(out, "bad_inputs").values():
        assert record["status"] == "failed" and reason in record["reason"], record["reason"]


def test_an_op_the_exporter_cannot_handle_fails_onnx_engines_only(earlier):
    models, out = earlier
    make_model(models, "unexportable", forward=(
        "out = self.head(torch.relu(self.conv(image)).mean(dim=(2, 3)))\n"
        "                return out + torch.linalg.cholesky(out.T @ out + torch.eye(5)).sum(0)"))  # fmt: skip
    assert run(models, "unexportable", out, "--engines", "pytorch-cpu,onnxruntime-cpu") == 1
    found = records(out, "unexportable")
    assert found[("pytorch-cpu", "fp32", 1)]["status"] == "ok"
    onnx = found[("onnxruntime-cpu", "fp32", 1)]
    assert onnx["status"] == "failed" and "no ONNX file: ExportError: torch.onnx.export (torchscript) failed" in onnx["reason"]


def test_a_truncated_cached_onnx_file_is_detected_and_rebuilt(earlier):
    models, out = earlier
    onnx = out / "healthy" / "cache" / "16x16x3" / "model.onnx"
    onnx.write_bytes(onnx.read_bytes()[:200])
    with pytest.warns(UserWarning, match="model.onnx does not match its recorded hash"):
        assert run(models, "healthy", out, "--engines", "onnxruntime-cpu", "--batch-sizes", "4") == 0
    assert records(out, "healthy")[("onnxruntime-cpu", "fp32", 4)]["status"] == "ok"
    assert len(onnx.read_bytes()) > 200


def test_a_child_killed_mid_measurement_is_recorded_and_the_sweep_goes_on(earlier, monkeypatch):
    models, out = earlier
    make_model(models, "killed", extra="CALLS = [0]", forward=(
        "CALLS[0] += 1\n"
        "                if os.environ.get('DEPLOYBENCH_ROLE') == 'experiment' and CALLS[0] == 4:\n"
        "                    os.kill(os.getpid(), signal.SIGKILL)\n"
        "                return self.head(torch.relu(self.conv(image)).mean(dim=(2, 3)))"))  # fmt: skip
    assert run(models, "killed", out, "--engines", "pytorch-cpu,onnxruntime-cpu") == 1
    found = records(out, "killed")
    killed = found[("pytorch-cpu", "fp32", 1)]
    assert killed["status"] == "failed" and killed["reason"].startswith("child process killed by SIGKILL (exit status -9)")
    assert killed["exit_status"] == -9 and "log_tail" in killed
    assert found[("onnxruntime-cpu", "fp32", 1)]["status"] == "ok"  # its child never runs the PyTorch module


def test_memory_error_at_one_batch_size_leaves_the_others_measured(earlier):
    models, out = earlier
    make_model(models, "greedy", forward=(
        "if image.shape[0] >= 4:\n"
        "                    raise MemoryError('cannot allocate 64 GiB')\n"
        "                return self.head(torch.relu(self.conv(image)).mean(dim=(2, 3)))"))  # fmt: skip
    assert run(models, "greedy", out, "--engines", "pytorch-cpu", "--batch-sizes", "1,4,2") == 1
    found = records(out, "greedy")
    assert found[("pytorch-cpu", "fp32", 4)]["status"] == "failed"
    assert "MemoryError: cannot allocate 64 GiB" in found[("pytorch-cpu", "fp32", 4)]["reason"]
    assert found[("pytorch-cpu", "fp32", 1)]["status"] == found[("pytorch-cpu", "fp32", 2)]["status"] == "ok"


def test_nan_outputs_are_a_failed_result_not_an_average(earlier):
    models, out = earlier
    make_model(models, "nan_model", forward="return self.head(torch.relu(self.conv(image)).mean(dim=(2, 3))) * float('nan')")
    assert run(models, "nan_model", out, "--engines", "pytorch-cpu") == 1
    record = records(out, "nan_model")[("pytorch-cpu", "fp32", 1)]
    assert record["status"] == "failed" and record["reason"] == "outputs contain NaN or Inf"
    assert "NaN" in (out / "nan_model" / "summary.md").read_text()


def test_a_child_that_hangs_is_killed_at_the_timeout(earlier, monkeypatch):
    models, out = earlier
    make_model(models, "hangs", extra="import time", forward=(
        "if os.environ.get('DEPLOYBENCH_ROLE') == 'experiment':\n"
        "                    time.sleep(60)\n"
        "                return self.head(torch.relu(self.conv(image)).mean(dim=(2, 3)))"))  # fmt: skip
    start = time.monotonic()
    assert run(models, "hangs", out, "--engines", "pytorch-cpu", "--timeout", "8") == 1
    assert time.monotonic() - start < 40
    record = records(out, "hangs")[("pytorch-cpu", "fp32", 1)]
    assert record["status"] == "failed" and record["reason"].startswith("timed out after 8 s")


def test_interrupted_sweep_keeps_finished_experiments_and_resumes_without_measuring_them_twice(earlier):
    models, out = earlier
    command = [sys.executable, "-m", "framework.cli", "run", "healthy", "--models-dir", str(models), "--output", str(out),
               "--engines", "onnxruntime-cpu", "--batch-sizes", "3,5,6,7", "--iterations", "3", "--warmup", "0", "--min-duration", "0"]  # fmt: skip
    sweep = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = out / "healthy" / "16x16x3" / "onnxruntime-cpu__fp32__bs3" / "summary.json"
    deadline = time.monotonic() + 60
    while not first.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    sweep.send_signal(signal.SIGTERM)
    _, err = sweep.communicate(timeout=60)
    assert sweep.returncode == 130, err
    assert "interrupted; finished experiments are kept" in err
    assert lock_is_free(out / "healthy")
    finished = {k: v for k, v in records(out, "healthy").items() if k[2] in (3, 5, 6, 7)}
    assert (("onnxruntime-cpu", "fp32", 3) in finished) and len(finished) < 4
    stamps = {k: (out / "healthy" / "16x16x3" / f"onnxruntime-cpu__fp32__bs{k[2]}" / "latencies.csv").stat().st_mtime_ns for k in finished}
    resumed = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.count("kept from an earlier run") == len(finished)
    after = records(out, "healthy")
    assert all(after[("onnxruntime-cpu", "fp32", b)]["status"] == "ok" for b in (3, 5, 6, 7))
    for key, stamp in stamps.items():
        path = out / "healthy" / "16x16x3" / f"onnxruntime-cpu__fp32__bs{key[2]}" / "latencies.csv"
        assert path.stat().st_mtime_ns == stamp, f"{key} was measured twice"


HOLD_LOCK = """
import fcntl, json, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
fcntl.flock(fd, fcntl.LOCK_EX)
os.ftruncate(fd, 0)
os.write(fd, json.dumps({"pid": os.getpid(), "host": os.uname().nodename, "started": "earlier"}).encode())
print("held", flush=True)
time.sleep(60)
"""


def lock_is_free(folder: Path) -> bool:
    import fcntl

    fd = os.open(folder / LOCK_NAME, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)


def test_a_second_run_on_the_same_folder_is_refused_naming_the_holder(earlier, capsys):
    """The lock is the kernel's: a live holder refuses the run, a killed one (SIGKILL: no clean-up) does not."""
    models, out = earlier
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(out / "healthy" / LOCK_NAME)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert run(models, "healthy", out) == 2
        assert f"is in use by another deploybench run (PID {holder.pid}" in capsys.readouterr().err
    finally:
        holder.kill()
        holder.wait()
    assert run(models, "healthy", out, "--engines", "onnxruntime-cpu") == 0  # the dead holder's lock is gone with it
    assert lock_is_free(out / "healthy")


def test_a_read_only_results_folder_gives_a_clear_error(measured, tmp_path, capsys):
    models, _ = measured
    if os.geteuid() == 0:  # root writes through file modes; /sys is mounted read-only in containers
        read_only = Path("/sys/kernel")
    else:
        read_only = tmp_path / "out"
        read_only.mkdir()
        read_only.chmod(0o555)
    assert run(models, "healthy", read_only) == 2
    err = capsys.readouterr().err
    assert f"cannot create the results folder {read_only / 'healthy'}: " in err, err
    assert not (read_only / "healthy").exists()


def test_a_model_name_with_dotdot_cannot_escape_the_results_folder(earlier, capsys):
    models, out = earlier
    make_model(models, "escape", config_edit=lambda t: t.replace("name: escape", "name: ../../escape"))
    loader = (models / "escape" / "load.py").read_text().replace("name = 'escape'", "name = '../../escape'")
    (models / "escape" / "load.py").write_text(loader)
    code = run(models, "../../escape", out, "--engines", "onnxruntime-cpu")
    err = capsys.readouterr().err
    assert code == 2 and "escape/config.yaml: name:" in err, err
    assert not (out.parent / "escape").exists() and not (out.parent.parent / "escape").exists()


def test_resume_measures_again_when_settings_change_or_force_is_given(measured, tmp_path):
    shutil.copytree(measured[1], tmp_path / "out")
    models, out = measured[0], tmp_path / "out"
    path = out / "healthy" / "16x16x3" / "onnxruntime-cpu__fp32__bs1" / "latencies.csv"
    stamp = path.stat().st_mtime_ns
    assert run(models, "healthy", out, "--engines", "onnxruntime-cpu") == 0
    assert path.stat().st_mtime_ns == stamp
    assert run(models, "healthy", out, "--engines", "onnxruntime-cpu", "--force") == 0
    assert path.stat().st_mtime_ns != stamp
    stamp = path.stat().st_mtime_ns
    assert main(["run", "healthy", "--models-dir", str(models), "--output", str(out), "--engines", "onnxruntime-cpu",
                 "--iterations", "5", "--warmup", "0", "--min-duration", "0", "--quiet"]) == 0  # fmt: skip
    assert path.stat().st_mtime_ns != stamp and load_result(path.parent).latency.n == 5


def test_resume_measures_again_an_experiment_whose_graph_recipe_changed(measured, tmp_path, monkeypatch):
    """Figures of an int8 graph made by another recipe (a newer version's, or another CPU's: precision.int8_recipe)
    are not kept; fp32, whose graph did not change, is."""
    from framework.artifacts import graphs as precision

    models, out = measured[0], tmp_path / "out"
    args = ("--engines", "onnxruntime-cpu", "--precisions", "fp32,int8", "--in-process")
    assert run(models, "healthy", out, *args) == 0
    fp32, int8 = (out / "healthy" / "16x16x3" / f"onnxruntime-cpu__{p}__bs1" / "latencies.csv" for p in ("fp32", "int8"))
    stamps = fp32.stat().st_mtime_ns, int8.stat().st_mtime_ns
    monkeypatch.setitem(precision.INT8_VARIANTS, "int8", {**precision.INT8_DEFAULTS, "per_channel": False})
    assert run(models, "healthy", out, *args) == 0
    assert fp32.stat().st_mtime_ns == stamps[0] and int8.stat().st_mtime_ns != stamps[1]
    meta = json.loads((out / "healthy" / "cache" / "16x16x3" / "model_int8.onnx.meta.json").read_text())
    assert meta["settings"]["per_channel"] is False
