"""Cases an outside attacker found after the first reliability fixes, each reproduced here: the model's code
outside its class, a lock file that is a link, damaged result fields, zero latencies, argparse's own errors,
absurd batch sizes and outputs that contradict the config."""

import json
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from framework.cli import main
from tests.conftest import FIXTURE_MODELS
from tests.test_faults import FAST, REPO, earlier, measured, records, run  # noqa: F401

HELPER_MODEL = """
import sys
from pathlib import Path
import numpy as np
import torch
from framework import ModelLoader, register_model
sys.path.insert(0, str(Path(__file__).parent))
import helper_layers


class Net(helper_layers.Base):
    pass


@register_model
class Loader(ModelLoader):
    name = "helped"

    def load_pytorch_module(self):
        torch.manual_seed(0)
        net = Net()
        net.register_buffer("scale", torch.from_numpy(np.load(Path(__file__).parent / "scale.npy")), persistent=False)
        return net.eval()
"""
HELPER_LAYERS = """
import torch


class Base(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.head = torch.nn.Linear(4, 5)

    def forward(self, image):
        return self.head(torch.relu(self.conv(image)).mean(dim=(2, 3))) * self.scale
"""


def test_code_and_buffers_outside_the_model_class_are_part_of_the_fingerprint(tmp_path):
    folder = tmp_path / "models" / "helped"
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text((FIXTURE_MODELS / "tiny_cnn" / "config.yaml").read_text().replace("name: tiny_cnn", "name: helped"))
    (folder / "load.py").write_text(HELPER_MODEL)
    (folder / "helper_layers.py").write_text(HELPER_LAYERS)
    np.save(folder / "scale.npy", np.float32(1.0))
    out = tmp_path / "out"

    def measured_once() -> dict:
        assert run(tmp_path / "models", "helped", out, "--engines", "onnxruntime-cpu") == 0
        return records(out, "helped")[("onnxruntime-cpu", "fp32", 1)]

    first = measured_once()
    assert measured_once()["run_id"] == first["run_id"]  # nothing changed: kept
    (folder / "helper_layers.py").write_text(HELPER_LAYERS.replace("* self.scale", "* self.scale * 3 + 1"))
    second = measured_once()
    assert second["run_id"] != first["run_id"] and second["export"]["export_from_cache"] is False and second["validity"] == "valid"
    np.save(folder / "scale.npy", np.float32(2.0))  # a non-persistent buffer: not in the state dict
    third = measured_once()
    assert third["run_id"] != second["run_id"] and third["export"]["export_from_cache"] is False and third["validity"] == "valid"


def test_a_lock_file_that_is_a_symbolic_link_is_refused_and_its_target_untouched(earlier, tmp_path, capsys):
    models, out = earlier
    precious = tmp_path / "precious.txt"
    precious.write_text("precious\n")
    lock = out / "healthy" / ".deploybench.lock"
    lock.unlink(missing_ok=True)
    lock.symlink_to(precious)
    assert run(models, "healthy", out) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is a symbolic link" in err
    assert precious.read_text() == "precious\n"
    lock.unlink()


@pytest.mark.parametrize("field, value", [("batch_size", None), ("engine", ["a"]), ("example_shapes", "16x16")])
def test_report_and_plot_skip_a_result_with_fields_of_the_wrong_type(earlier, capsys, field, value):
    models, out = earlier
    summary = out / "healthy" / "16x16x3" / "onnxruntime-cpu__fp32__bs1" / "summary.json"
    saved = summary.read_text()
    summary.write_text(json.dumps({**json.loads(saved), field: value}))
    for command in ("report", "plot"):
        with pytest.warns(UserWarning, match="onnxruntime-cpu__fp32__bs1/summary.json: damaged result"):
            assert main([command, "healthy", "--output", str(out)]) == 0
    summary.write_text(saved)


def test_a_truncated_latencies_file_is_named_and_skipped(earlier):
    models, out = earlier
    latencies = out / "healthy" / "16x16x3" / "onnxruntime-cpu__fp32__bs1" / "latencies.csv"
    saved = latencies.read_bytes()
    latencies.write_bytes(saved[:40])
    with pytest.warns(UserWarning, match=r"latencies.csv: holds \d samples, its summary.json counts 3"):
        assert main(["report", "healthy", "--output", str(out)]) == 0
    latencies.write_bytes(saved)


def test_compare_with_a_zero_latency_does_not_crash(earlier, tmp_path, capsys):
    models, out = earlier
    zeroed = tmp_path / "zeroed"
    shutil.copytree(out, zeroed)
    experiment = zeroed / "healthy" / "16x16x3" / "onnxruntime-cpu__fp32__bs1"
    rows = experiment.joinpath("latencies.csv").read_text().splitlines()
    experiment.joinpath("latencies.csv").write_text("\n".join([rows[0], *(f"{i},0.000000" for i in range(len(rows) - 1))]) + "\n")
    for a, b in ((out, zeroed), (zeroed, out)):
        assert main(["compare", str(a), str(b)]) == 0
        assert "latencies not all positive" in capsys.readouterr().out


@pytest.mark.parametrize("args", [["--iterations", "nan"], ["--batch-sizes", "99999999999999999999"], ["--batch-sizes", "1,,2"]])
def test_argument_errors_are_one_line_and_create_nothing(tmp_path, args):
    done = subprocess.run([sys.executable, "-m", "framework.cli", "run", "tiny_cnn", "--models-dir", str(FIXTURE_MODELS), "--output",
                           str(tmp_path / "out"), *args], cwd=REPO, capture_output=True, text=True, check=False)  # fmt: skip
    assert done.returncode == 2 and done.stderr.startswith("deploybench: error: run: argument") and done.stderr.count("\n") == 1, done.stderr
    assert not (tmp_path / "out").exists()


def test_outputs_that_contradict_the_config_fail_naming_the_field(earlier):
    models, out = earlier
    folder = models / "wrong_output"
    shutil.copytree(FIXTURE_MODELS / "tiny_cnn", folder)
    (folder / "config.yaml").write_text((folder / "config.yaml").read_text().replace("name: tiny_cnn", "name: wrong_output"))
    load = (folder / "load.py").read_text().replace('name = "tiny_cnn"', 'name = "wrong_output"')
    (folder / "load.py").write_text(load.replace("self.head = torch.nn.Linear(4, 5)", "self.head = torch.nn.Linear(4, 7)"))
    assert run(models, "wrong_output", out, "--engines", "onnxruntime-cpu,pytorch-cpu") == 1
    for record in records(out, "wrong_output").values():
        assert record["status"] == "failed"
        assert "config.yaml: outputs[0].shape.runtime: the model returns 'logits' with shape (1, 7) at batch size 1" in record["reason"]


def test_a_malformed_job_file_is_one_line(tmp_path):
    job = tmp_path / "job.json"
    job.write_text(textwrap.dedent("{not json"))
    done = subprocess.run([sys.executable, "-m", "framework.sweep.isolation", str(job)], cwd=REPO, capture_output=True, text=True, check=False)
    assert (
        done.returncode == 2
        and done.stderr.startswith(f"deploybench: error: {job}: not a job written by deploybench")
        and done.stderr.count("\n") == 1
    )
