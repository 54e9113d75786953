"""The unit of work and its outcome: a ``Job`` and a ``Result`` survive their files unchanged, results of the
previous format still load (and resume), foreign files are skipped by name, and an ONNX Runtime worker never
loads the PyTorch module."""

import dataclasses
import json
import os
import shutil
import textwrap
from pathlib import Path

import pytest

from framework.cli import main
from framework.errors import ResultFileError
from framework.results.record import SCHEMA_VERSION, Result
from framework.results.store import load_result, load_results, save_result
from framework.sweep.job import Job
from tests.conftest import FIXTURE_MODELS

FAST = ["--iterations", "5", "--warmup", "1", "--min-duration", "0", "--quiet"]
V1 = Path(__file__).parent / "fixtures" / "results_v1"


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    out = tmp_path_factory.mktemp("records")
    assert main(["run", "tiny_two_inputs", "--models-dir", str(FIXTURE_MODELS), "--output", str(out),
                 "--engines", "onnxruntime-cpu,pytorch-cpu", "--precisions", "fp32,fp16", *FAST]) == 0  # fmt: skip
    return out


def test_a_result_round_trips_through_its_files_unchanged(measured, tmp_path):
    results = load_results(measured)
    assert {r.status for r in results} == {"ok", "skipped"}  # pytorch-cpu does not run fp16
    for result in results:
        assert Result.from_json(json.loads(json.dumps(result.to_json())), result.samples, result.timeline_csv) == result
        save_result(tmp_path / result.experiment.engine / result.experiment.precision, result)
        assert load_result(tmp_path / result.experiment.engine / result.experiment.precision) == result
    ok = next(r for r in results if r.status == "ok")
    assert ok.samples is not None and len(ok.samples.latencies_ns) == ok.latency.n and ok.timeline_csv.startswith("t_s,")
    with pytest.raises(dataclasses.FrozenInstanceError):
        ok.status = "failed"


def test_a_job_round_trips_through_job_json_unchanged(measured):
    path = next(measured.rglob("job.json"))
    job = Job.read(path)
    assert Job.from_json(json.loads(json.dumps(job.to_json()))) == job
    assert job.to_json() == json.loads(path.read_text())
    assert job.result_dir == path.parent and job.data_file.is_file() and job.fingerprint == load_result(path.parent).fingerprint


def test_results_of_the_previous_format_load_and_are_measured_again(tmp_path, capsys):
    shutil.copytree(V1, tmp_path / "out")
    results = load_results(tmp_path / "out")
    assert len(results) == 2 and all(r.is_valid for r in results)
    onnx = next(r for r in results if r.experiment.engine == "onnxruntime-cpu")
    assert onnx.export.onnx_nodes == 4 and onnx.export.exporter == "torchscript" and onnx.latency.n == len(onnx.samples.latencies_ns)
    assert main(["report", "tiny_cnn", "--output", str(tmp_path / "out")]) == 0
    assert "onnxruntime-cpu" in (tmp_path / "out" / "tiny_cnn" / "report.md").read_text()
    capsys.readouterr()
    # Their fingerprint did not cover the model's code or the machine: the same command measures them again,
    # and the next run keeps the new ones.
    command = ["run", "tiny_cnn", "--models-dir", str(FIXTURE_MODELS), "--output", str(tmp_path / "out"),
               "--engines", "onnxruntime-cpu,pytorch-cpu", "--iterations", "5", "--warmup", "1", "--min-duration", "0"]  # fmt: skip
    assert main(command) == 0
    assert "kept from an earlier run" not in capsys.readouterr().out
    assert {json.loads(p.read_text())["schema_version"] for p in (tmp_path / "out").rglob("summary.json")} == {SCHEMA_VERSION}
    assert main(command) == 0
    assert capsys.readouterr().out.count("kept from an earlier run") == 2


def test_foreign_or_newer_result_files_are_named_and_skipped(tmp_path):
    shutil.copytree(V1, tmp_path / "out")
    folder = tmp_path / "out" / "tiny_cnn" / "16x16x3"
    newer = folder / "pytorch-cpu__fp32__bs1" / "summary.json"
    newer.write_text(json.dumps({**json.loads(newer.read_text()), "schema_version": SCHEMA_VERSION + 97}))
    (folder / "junk").mkdir()
    (folder / "junk" / "summary.json").write_text("[1, 2]")
    with pytest.warns(UserWarning) as caught:
        results = load_results(tmp_path / "out")
    assert [r.experiment.engine for r in results] == ["onnxruntime-cpu"]
    messages = " ".join(str(w.message) for w in caught)
    assert f"{newer}: result format version {SCHEMA_VERSION + 97}" in messages and "measure again with --force" in messages
    assert f"{folder / 'junk' / 'summary.json'}: not a deploybench result" in messages
    with pytest.raises(ResultFileError, match="not a deploybench result"):
        load_result(folder / "junk")


def test_an_onnxruntime_worker_never_loads_the_pytorch_module(tmp_path):
    """Only the shape's preparation (export, references) and PyTorch workers call load_pytorch_module."""
    plugins = tmp_path / "plugins"
    shutil.copytree(FIXTURE_MODELS / "tiny_cnn", plugins / "counted")
    (plugins / "counted" / "config.yaml").write_text((plugins / "counted" / "config.yaml").read_text().replace("name: tiny_cnn", "name: counted"))
    log = tmp_path / "loads.txt"
    (plugins / "counted" / "load.py").write_text(
        textwrap.dedent(f"""\
        import os
        import torch
        from framework import ModelLoader, register_model

        @register_model
        class Counted(ModelLoader):
            name = "counted"

            def load_pytorch_module(self):
                with open({str(log)!r}, "a") as handle:
                    handle.write(f"{{os.getpid()}}\\n")
                torch.manual_seed(0)
                return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 5))
        """)
    )
    assert main(["run", "counted", "--models-dir", str(plugins), "--output", str(tmp_path / "out"),
                 "--engines", "onnxruntime-cpu", "--precisions", "fp32,fp16,int8", "--batch-sizes", "1,2", *FAST]) == 0  # fmt: skip
    loads = log.read_text().split()
    assert len(loads) == 1 and loads[0] != str(os.getpid())  # the shape's preparation child only: the six ONNX Runtime children never did
    assert main(["run", "counted", "--models-dir", str(plugins), "--output", str(tmp_path / "out"), "--engines", "pytorch-cpu", *FAST]) == 0
    assert len(set(log.read_text().split())) == 3  # another preparation, and the PyTorch child
