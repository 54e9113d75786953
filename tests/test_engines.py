"""Every engine this machine can run runs the real model and agrees with PyTorch; the lifecycle is enforced;
output buffers are sized without running the model; ONNX Runtime's silent provider fallback is caught."""

import ast
import importlib.util
import inspect
from pathlib import Path

import numpy as np
import pytest

from framework.artifacts.export import export_onnx
from framework.config import load_config
from framework.engines import (
    ENGINES,
    PRECISIONS,
    Engine,
    EngineStateError,
    ModelArtifacts,
    UnknownEngineError,
    engine_availability,  # fmt: skip
    engine_class,
)
from framework.engines._onnxruntime import create_verified_session, resolve_output_shapes
from framework.errors import DeployBenchError, ProviderFallbackError
from framework.loader import make_batch
from framework.measure.agreement import compare_outputs
from framework.torch_outputs import reference_outputs
from tests.conftest import FIXTURE_MODELS

# Like timm's tests over list_models(): every registered engine that says it can run here.
RUNNABLE = [name for name in ENGINES if engine_availability(name) is None]
TWO_INPUTS = FIXTURE_MODELS / "tiny_two_inputs" / "config.yaml"


@pytest.fixture
def artifacts(fixture_registry, tmp_path):
    loader = fixture_registry.get("tiny_two_inputs").create()
    module = loader.load_pytorch_module()
    inputs = loader.runtime_inputs()
    result = export_onnx(module, inputs, loader.config, tmp_path / "m.onnx")
    batched = {spec.name: make_batch(x, spec, 3) for spec, x in zip(loader.config.inputs, inputs)}
    return ModelArtifacts(loader.config, module, {"fp32": result.path}, tmp_path / "cache"), batched


@pytest.mark.parametrize("name", RUNNABLE)
def test_engine_runs_the_model_and_agrees_with_pytorch_on_every_named_output(artifacts, name):
    arts, inputs = artifacts
    with engine_class(name)(arts, "fp32") as engine:
        outputs = engine.infer(inputs)
        engine.make_step(inputs)()  # the timed callable runs on its own
        device_step = engine.make_device_step(inputs)
        if device_step is not None:
            step, stream = device_step
            step()
            stream.synchronize()
        assert isinstance(engine.describe(), dict)
    assert list(outputs) == ["pooled", "lengths"]
    assert outputs["pooled"].shape == (3, 8) and outputs["lengths"].shape == (3,)
    report = compare_outputs(reference_outputs(arts.module, arts.config, inputs), outputs)
    assert report["worst"]["all_close"], report
    assert report["worst"]["cosine_similarity"] > 0.9999


def test_every_registered_engine_is_complete_named_and_says_whether_it_runs_here():
    assert "pytorch-cpu" in RUNNABLE and "onnxruntime-cpu" in RUNNABLE
    for name in ENGINES:
        cls = engine_class(name)
        assert cls.name == name and not inspect.isabstract(cls), name
        assert set(cls.precisions) <= set(PRECISIONS) and "fp32" in cls.precisions, name
        reason = engine_availability(name)
        assert reason is None or (isinstance(reason, str) and reason), (name, reason)


def test_no_engine_module_imports_another():
    modules = {path.split(":")[0] for path in ENGINES.values()}
    short = {m.rsplit(".", 1)[1] for m in modules}
    for module in modules:
        tree = ast.parse(Path(importlib.util.find_spec(module).origin).read_text())
        imported = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                imported |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                imported.add(node.module)
                if node.module == "framework.engines":
                    imported |= {f"framework.engines.{a.name}" for a in node.names if a.name in short}
        assert not imported & (modules - {module}), (module, sorted(imported & modules))


def test_unknown_engine_is_a_deploybench_error_listing_the_known_ones():
    with pytest.raises(UnknownEngineError, match=r"unknown engine 'warp-drive'; known engines: pytorch-cpu, onnxruntime-cpu, "):
        engine_class("warp-drive")
    assert issubclass(UnknownEngineError, DeployBenchError) and not issubclass(UnknownEngineError, KeyError)


class NoProbeEngine(Engine):
    """Forgets ``availability``: must be refused, not listed as runnable."""

    name, runtime, device = "no-probe", "pytorch", "cpu"

    def _load(self): ...

    def _infer(self, inputs):
        return {}

    def _close(self): ...


def test_an_engine_without_availability_cannot_be_built_and_is_listed_unavailable(artifacts, monkeypatch):
    with pytest.raises(TypeError, match="availability"):
        NoProbeEngine(artifacts[0], "fp32")
    monkeypatch.setitem(ENGINES, "no-probe", f"{__name__}:NoProbeEngine")
    assert engine_availability("no-probe") == "NoProbeEngine is incomplete: it does not implement availability"


def test_precisions_come_from_the_precision_table(artifacts):
    with pytest.raises(TypeError, match=r"names precisions \['fp8'\] that framework.precisions.PRECISIONS does not define"):
        type("Fp8Engine", (NoProbeEngine,), {"precisions": ("fp32", "fp8")})
    with pytest.raises(DeployBenchError, match=r"pytorch-cpu does not run int8 \(it runs fp32\)"):
        engine_class("pytorch-cpu")(artifacts[0], "int8")


@pytest.mark.parametrize("name", RUNNABLE)
def test_lifecycle_load_once_use_close_any_number_of_times(artifacts, name):
    arts, inputs = artifacts
    engine = engine_class(name)(arts, "fp32")
    for call in (lambda: engine.infer(inputs), lambda: engine.make_step(inputs), lambda: engine.make_device_step(inputs),
                 engine.describe):  # fmt: skip
        with pytest.raises(EngineStateError, match=r"\(\) needs a loaded engine, this one is not loaded yet \(call load\(\)"):
            call()
    engine.load()
    assert engine.is_loaded
    with pytest.raises(EngineStateError, match=r"load\(\) refused, the engine is already loaded; an engine loads once"):
        engine.load()
    engine.close()
    engine.close()  # idempotent
    with pytest.raises(EngineStateError, match=r"infer\(\) needs a loaded engine, this one is closed"):
        engine.infer(inputs)
    with pytest.raises(EngineStateError, match="the engine is closed"):
        engine.load()
    with pytest.raises(RuntimeError, match="inside the block"), engine_class(name)(arts, "fp32") as engine:
        assert engine.is_loaded and list(engine.infer(inputs)) == ["pooled", "lengths"]
        raise RuntimeError("inside the block")
    assert not engine.is_loaded
    with pytest.raises(EngineStateError, match="this one is closed"):
        engine.infer(inputs)


@pytest.mark.parametrize("name", RUNNABLE)
def test_a_failed_load_is_a_clear_error_and_close_still_works(artifacts, name):
    engine = engine_class(name)(ModelArtifacts(artifacts[0].config, cache_dir=artifacts[0].cache_dir), "fp32")
    with pytest.raises(DeployBenchError, match=r"model 'tiny_two_inputs': (this engine needs the PyTorch module|no ONNX file)"):
        engine.load()
    engine.close()
    engine.close()


def test_model_artifacts_say_what_is_missing(artifacts):
    empty = ModelArtifacts(artifacts[0].config)
    with pytest.raises(DeployBenchError, match="this engine needs the PyTorch module, and none was loaded"):
        empty.get_module()
    with pytest.raises(DeployBenchError, match=r"no ONNX file with fp16 in the graph was produced \(have: fp32\)"):
        artifacts[0].onnx_for("fp16")
    with pytest.raises(DeployBenchError, match=r"tensorrt keeps its built engines in a cache folder, and none was given"):
        empty.require_cache_dir("tensorrt")


# ---- output buffers sized from ONNX Runtime's metadata and the config, never by running the model --------
INPUT_SHAPES = {"tokens": (3, 6), "scale": (3, 1)}


def test_output_shapes_resolve_from_metadata_config_and_input_shapes():
    config = load_config(TWO_INPUTS)
    metadata = [("lengths", ["unk__1"], "tensor(float)"), ("pooled", ["batch_size", 8], "tensor(float16)"), ("x", [2], "tensor(int64)")]
    assert resolve_output_shapes(config, metadata, INPUT_SHAPES) == {
        "pooled": ((3, 8), np.dtype(np.float16)),
        "lengths": ((3,), np.dtype(np.float32)),  # symbolic in ORT, named batch_size in the config
    }
    assert resolve_output_shapes(config, [("pooled", [None, None], "tensor(float)"), ("lengths", None, "tensor(float)")],
                                 INPUT_SHAPES)["pooled"][0] == (3, 8)  # fixed 8 from the config  # fmt: skip


def test_an_output_dim_nothing_can_size_names_the_config_field(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(TWO_INPUTS.read_text().replace("{runtime: [-1, 8], dims_names: [batch_size, features]}",
                                                   "{runtime: [-1, -1], dims_names: [batch_size, features]}"))  # fmt: skip
    config = load_config(path)
    metadata = [("pooled", ["batch_size", "unk__2"], "tensor(float)"), ("lengths", ["batch_size"], "tensor(float)")]
    with pytest.raises(DeployBenchError, match=r"cannot size output 'pooled' dim 1 \(features\): ONNX Runtime gives "
                                               r"'unk__2'.* \(.*config.yaml: outputs\[0\].shape.runtime\[1\]\)"):  # fmt: skip
        resolve_output_shapes(config, metadata, INPUT_SHAPES)


@pytest.mark.parametrize("metadata, inputs, message", [
    ([("lengths", [None], "tensor(float)")], INPUT_SHAPES, r"output 'pooled' \(.*config.yaml: outputs\[0\].name\) is not an output"),
    ([("pooled", [None], "tensor(float)")], INPUT_SHAPES, r"gives it 1 dims \[None\], the config 2 \(.*outputs\[0\].shape.runtime\)"),
    ([("pooled", [None, 8], "tensor(string)")], INPUT_SHAPES, r"output 'pooled' has ONNX type tensor\(string\)"),
    ([("pooled", [None, 8], "tensor(float)")], {"tokens": (3, 6), "scale": (2, 1)}, r"different sizes \[2, 3\]"),
], ids=["output missing", "rank differs", "type unbindable", "inputs disagree"])  # fmt: skip
def test_output_metadata_the_config_contradicts_is_refused(metadata, inputs, message):
    with pytest.raises(DeployBenchError, match=message):
        resolve_output_shapes(load_config(TWO_INPUTS), metadata, inputs)


def test_resolved_shapes_match_what_onnx_runtime_returns(artifacts):
    arts, inputs = artifacts
    session = create_verified_session(arts.onnx_for("fp32"), ["CPUExecutionProvider"])
    metadata = [(o.name, o.shape, o.type) for o in session.get_outputs()]
    for feed in (inputs, {"tokens": np.ones((2, 11), np.int64), "scale": np.ones((2, 1), np.float32)}):
        got = dict(zip(arts.config.output_names, session.run(arts.config.output_names, feed)))
        shapes = {n: a.shape for n, a in feed.items()}
        assert resolve_output_shapes(arts.config, metadata, shapes) == {n: (a.shape, a.dtype) for n, a in got.items()}


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
