"""The CPU engines run the real model and agree; ONNX Runtime's silent provider fallback is caught."""

import numpy as np
import pytest

from framework.measure.agreement import compare_outputs
from framework.engines import ENGINES, ModelArtifacts, engine_availability, engine_class
from framework.engines.onnxruntime_base import create_verified_session
from framework.errors import ProviderFallbackError
from framework.artifacts.export import export_onnx
from framework.loader import make_batch


@pytest.fixture
def artifacts(fixture_registry, tmp_path):
    loader = fixture_registry.get("tiny_two_inputs").create()
    module = loader.load_pytorch_module()
    inputs = loader.runtime_inputs()
    result = export_onnx(module, inputs, loader.config, tmp_path / "m.onnx")
    batched = {spec.name: make_batch(x, spec, 3) for spec, x in zip(loader.config.inputs, inputs)}
    return ModelArtifacts(loader.config, module, {"fp32": result.path}), batched


def test_both_cpu_engines_agree_on_every_named_output(artifacts):
    arts, inputs = artifacts
    outputs = {}
    for name in ("pytorch-cpu", "onnxruntime-cpu"):
        engine = engine_class(name)(arts, "fp32")
        engine.load()
        outputs[name] = engine.infer(inputs)
        step = engine.make_step(inputs)
        step()  # the timed callable runs on its own
        engine.close()
    torch_out, ort_out = outputs["pytorch-cpu"], outputs["onnxruntime-cpu"]
    assert list(torch_out) == list(ort_out) == ["pooled", "lengths"]
    assert torch_out["pooled"].shape == (3, 8) and torch_out["lengths"].shape == (3,)
    report = compare_outputs(torch_out, ort_out)
    assert report["worst"]["all_close"], report
    assert report["worst"]["cosine_similarity"] > 0.9999


def test_cpu_engines_are_available_and_named(tmp_path):
    assert engine_availability("pytorch-cpu") is None
    assert engine_availability("onnxruntime-cpu") is None
    for name in ENGINES:
        assert engine_class(name).name == name


def test_requesting_a_provider_that_cannot_load_fails_loudly(artifacts):
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime build has CUDA; the fallback path needs one that lacks it")
    arts, _ = artifacts
    with pytest.raises(ProviderFallbackError, match=r"CUDAExecutionProvider is not in this onnxruntime build .* available: .*CPUExecutionProvider"):
        create_verified_session(arts.onnx_for("fp32"), ["CUDAExecutionProvider", "CPUExecutionProvider"])


def test_compare_outputs_known_answers():
    ref = {"y": np.array([1.0, 2.0, 3.0, 4.0])}
    same = compare_outputs(ref, {"y": ref["y"].copy()})["worst"]
    assert same["max_abs_error"] == 0 and same["share_close"] == 1.0 and same["all_close"]
    off = compare_outputs(ref, {"y": np.array([1.0, 2.0, 3.0, 5.0])})["worst"]
    assert off["max_abs_error"] == 1.0 and off["mean_abs_error"] == 0.25 and off["share_close"] == 0.75
    assert not off["all_close"]
    assert off["cosine_similarity"] == pytest.approx(34 / (np.sqrt(30) * np.sqrt(39)))
    nan = compare_outputs(ref, {"y": np.array([1.0, np.nan, 3.0, 4.0])})["worst"]
    assert nan["has_nan_or_inf"] and not nan["all_close"]
    with pytest.raises(ValueError, match=r"output 'y' has shape \(2,\), the PyTorch reference \(4,\)"):
        compare_outputs(ref, {"y": np.zeros(2)})


def test_dtype_mapping_between_numpy_and_torch_round_trips():
    import torch

    from framework.torch_outputs import numpy_dtype, torch_dtype

    for np_type, torch_type in [(np.float32, torch.float32), (np.float16, torch.float16), (np.int64, torch.int64),
                                (np.int32, torch.int32), (np.bool_, torch.bool), (np.uint8, torch.uint8)]:  # fmt: skip
        assert torch_dtype(np_type) == torch_type
        assert numpy_dtype(torch_type) == np.dtype(np_type)
