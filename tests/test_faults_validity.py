"""Fault injection against the validity checks: engines that answer wrongly in ways cosine similarity alone
misses (wrong scale, constant outputs at int8, wrong only over the dataset), and a graph traced with a
frozen branch. Each runs beside an earlier healthy run (``earlier``) and leaves its results unchanged."""

import numpy as np
import pytest

from framework.engines import ENGINES
from framework.engines.onnxruntime_cpu import OnnxRuntimeCPUEngine
from framework.engines.pytorch_cpu import PyTorchCPUEngine
from tests import test_faults
from tests.test_faults import make_model, records, run

earlier, measured = test_faults.earlier, test_faults.measured  # the fixtures: an earlier healthy run, checked unchanged


class HalfScaleEngine(PyTorchCPUEngine):
    """Right direction, half the magnitude: cosine similarity 1, relative L2 error 0.5."""

    name = "half-scale"

    def _infer(self, inputs):
        return {name: out * 0.5 for name, out in super()._infer(inputs).items()}

    def _make_step(self, inputs):
        step = super()._make_step(inputs)
        return lambda: step() * 0.5


class ConstantInt8Engine(OnnxRuntimeCPUEngine):
    """The int8 graph run once; that answer is returned for every input."""

    name = "constant-output-ort"

    def _infer(self, inputs):
        if not hasattr(self, "_cached"):
            self._cached = super()._infer(inputs)
        return self._cached


class DatasetOnlyFaultEngine(PyTorchCPUEngine):
    """Exact on the measured batch and on the varied inputs (its first two calls), then on the dataset the
    two top classes of every fourth sample swapped: a fault that only the dataset's agreement shows."""

    name = "dataset-fault"
    calls = samples = 0

    def _infer(self, inputs):
        outputs = super()._infer(inputs)
        self.calls += 1
        if self.calls <= 2:
            return outputs
        logits = outputs["logits"].copy()
        order = np.argsort(-logits, axis=1)
        rows = np.flatnonzero((self.samples + np.arange(len(logits))) % 4 == 0)
        self.samples += len(logits)
        first, second = order[rows, 0], order[rows, 1]
        logits[rows, first], logits[rows, second] = logits[rows, second], logits[rows, first].copy()
        return {**outputs, "logits": logits}


def register(monkeypatch, cls) -> str:
    monkeypatch.setitem(ENGINES, cls.name, f"{__name__}:{cls.__name__}")  # exists only in this process: --in-process
    return cls.name


def test_an_engine_at_half_scale_is_invalid_naming_relative_l2(earlier, monkeypatch):
    models, out = earlier
    engine = register(monkeypatch, HalfScaleEngine)
    assert run(models, "healthy", out, "--engines", f"pytorch-cpu,{engine}", "--in-process") == 0
    found = records(out, "healthy")
    half = found[(engine, "fp32", 1)]
    assert half["status"] == "ok" and half["validity"] == "invalid"
    assert half["agreement"]["worst"]["cosine_similarity"] == pytest.approx(1.0)
    assert half["agreement"]["worst"]["relative_l2_error"] == pytest.approx(0.5)
    assert half["invalid_reasons"][0].startswith("outputs disagree with PyTorch fp32: relative L2 error 0.5000 > 0.0141")
    assert found[("pytorch-cpu", "fp32", 1)]["validity"] == "valid"


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_constant_outputs_are_invalid_at_int8_as_at_fp32(earlier, monkeypatch, precision):
    models, out = earlier
    engine = register(monkeypatch, ConstantInt8Engine)
    args = ("--engines", f"onnxruntime-cpu,{engine}", "--precisions", precision, "--batch-sizes", "3", "--in-process")
    assert run(models, "healthy", out, *args) == 0  # batch 3: the earlier run measured 1 and 2
    found = records(out, "healthy")
    constant = found[(engine, precision, 3)]
    assert constant["status"] == "ok" and constant["validity"] == "invalid", constant["invalid_reasons"]
    assert "while PyTorch's changed: stale or constant outputs" in constant["invalid_reasons"][0]
    changes = constant["agreement_after_timing"]["changes"]["logits"]
    assert changes["engine"] == 0.0 and changes["reference"] > 0.01
    assert found[("onnxruntime-cpu", precision, 3)]["validity"] == "valid"


LOAD_DATASET = """
    def load_dataset(self):
        rng = np.random.default_rng(1)
        return [rng.random((40, 3, 16, 16), dtype=np.float32)], rng.integers(0, 5, 40)

    def load_pytorch_module(self):"""


def test_agreement_over_the_dataset_below_its_floor_is_invalid(earlier, monkeypatch):
    models, out = earlier
    make_model(models, "with_dataset")
    load_py = models / "with_dataset" / "load.py"
    load_py.write_text(load_py.read_text().replace("\n    def load_pytorch_module(self):", LOAD_DATASET, 1))
    engine = register(monkeypatch, DatasetOnlyFaultEngine)
    assert run(models, "with_dataset", out, "--engines", f"pytorch-cpu,{engine}", "--in-process") == 0
    found = records(out, "with_dataset")
    faulty = found[(engine, "fp32", 1)]
    assert faulty["agreement"]["worst"]["relative_l2_error"] == 0.0  # right where it is measured ...
    assert faulty["dataset_agreement"]["worst"]["top1_agreement"] == 0.75  # ... wrong on a quarter of the dataset
    assert faulty["validity"] == "invalid" and len(faulty["invalid_reasons"]) == 1
    reason = faulty["invalid_reasons"][0]
    assert reason.startswith("over the dataset, outputs disagree with PyTorch fp32: ") and "top-1 agreement 75.0% < 99.9%" in reason
    assert found[("pytorch-cpu", "fp32", 1)]["validity"] == "valid"


BRANCHY_FORWARD = """out = self.head(torch.relu(self.conv(image)).mean(dim=(2, 3)))
                if image.sum() > 0:
                    return out
                return -out"""


def test_a_graph_traced_with_a_tracer_warning_records_it_and_warns_its_results(earlier):
    models, out = earlier
    make_model(models, "branchy", forward=BRANCHY_FORWARD)
    assert run(models, "branchy", out, "--engines", "pytorch-cpu,onnxruntime-cpu") == 0
    found = records(out, "branchy")
    onnx, eager = found[("onnxruntime-cpu", "fp32", 1)], found[("pytorch-cpu", "fp32", 1)]
    traced = onnx["export"]["tracer_warnings"]
    assert len(traced) == 1 and f"{models / 'branchy' / 'load.py'}:" in traced[0] and "TracerWarning: Converting a tensor" in traced[0]
    assert onnx["validity"] == "valid"  # the example input takes the branch the graph kept
    assert f"the ONNX export traced with 1 TracerWarning (data-dependent control flow may be frozen): {traced[0]}" in onnx["warnings"]
    assert not any("TracerWarning" in w for w in eager["warnings"])  # eager PyTorch runs the module, not the graph
    assert "the ONNX export traced with 1 TracerWarning" in (out / "branchy" / "summary.md").read_text()
