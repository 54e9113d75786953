"""An engine that answers fast with stale or constant outputs is caught and labelled invalid."""

import numpy as np

from framework.engines import ENGINES
from framework.engines.pytorch_cpu import PyTorchCPUEngine
from framework.settings import MeasureSettings, SweepSettings
from framework.sweep.prepare import varied_inputs
from framework.sweep.runner import run_model


class ConstantOutputEngine(PyTorchCPUEngine):
    """Computes once, then returns that answer for every input: the failure a fast cache would have."""

    name = "constant-output"

    def _infer(self, inputs):
        if not hasattr(self, "_cached"):
            self._cached = super()._infer(inputs)
        return self._cached


def test_constant_outputs_are_labelled_invalid_while_real_ones_stay_valid(fixture_registry, tmp_path, monkeypatch):
    monkeypatch.setitem(ENGINES, "constant-output", f"{__name__}:ConstantOutputEngine")
    settings = SweepSettings(
        engines=("pytorch-cpu", "constant-output"), measure=MeasureSettings(iterations=3, warmup=0, min_duration=0), output=tmp_path, isolate=False
    )  # the test engine exists only in this process
    honest, constant = (r.to_json() for r in run_model(fixture_registry.get("tiny_cnn"), [None], settings, report=lambda _: None))
    assert honest["validity"] == "valid" and honest["agreement_after_timing"]["worst"]["cosine_similarity"] > 0.9999
    assert constant["status"] == "ok" and constant["validity"] == "invalid"
    assert "stale or constant outputs" in constant["invalid_reasons"][0]


def test_varied_inputs_differ_and_keep_dtypes():
    inputs = {"image": np.ones((1, 3, 4, 4), np.float32), "tokens": np.arange(6).reshape(1, 6), "flag": np.ones((1,), bool)}
    varied = varied_inputs(inputs)
    assert not np.array_equal(varied["image"], inputs["image"]) and varied["image"].dtype == np.float32
    assert varied["tokens"].tolist() == [[5, 0, 1, 2, 3, 4]]
    assert varied["flag"] is inputs["flag"]
