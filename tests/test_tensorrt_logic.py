"""TensorRT logic that runs without TensorRT: profiles, build-settings hashing, cache validity, call order."""

import numpy as np
import pytest

from framework.artifacts.cache import is_current, record_built, settings_hash
from framework.config import load_config
from framework.engines import engine_availability
from framework.engines._tensorrt import bind_and_execute, build_settings, check_in_profile, ort_profile_options, profile_shapes
from framework.errors import ConfigError, DeployBenchError
from tests.conftest import FIXTURE_MODELS

TINY_CNN = FIXTURE_MODELS / "tiny_cnn" / "config.yaml"


def variant(tmp_path, old, new):
    path = tmp_path / "config.yaml"
    text = TINY_CNN.read_text()
    assert old in text
    path.write_text(text.replace(old, new))
    return load_config(path)


def test_profile_from_config_min_opt_max():
    config = load_config(TINY_CNN)
    assert profile_shapes(config) == {"image": ((1, 3, 8, 8), (1, 3, 16, 16), (8, 3, 64, 64))}
    assert ort_profile_options(config) == {
        "trt_profile_min_shapes": "image:1x3x8x8",
        "trt_profile_opt_shapes": "image:1x3x16x16",
        "trt_profile_max_shapes": "image:8x3x64x64",
    }


def test_all_fixed_dims_give_a_static_engine(tmp_path):
    config = variant(tmp_path, "runtime: [-1, 3, -1, -1]\n      optimization: {min: [1, 3, 8, 8], opt: [1, 3, 16, 16], max: [8, 3, 64, 64]}",
                     "runtime: [1, 3, 16, 16]")  # fmt: skip
    assert profile_shapes(config) is None and ort_profile_options(config) == {}


def test_dynamic_dims_without_a_profile_name_the_missing_field(tmp_path):
    config = variant(tmp_path, "\n      optimization: {min: [1, 3, 8, 8], opt: [1, 3, 16, 16], max: [8, 3, 64, 64]}", "")
    with pytest.raises(
        ConfigError,
        match=r"config.yaml: inputs\[0\].shapes.optimization: required for TensorRT: runtime \[-1, 3, -1, -1\] has dynamic dims \[0, 2, 3\]",
    ):
        profile_shapes(config)


def test_a_fixed_input_beside_a_dynamic_one_gets_its_runtime_shape(tmp_path):
    path = tmp_path / "config.yaml"
    text = (FIXTURE_MODELS / "tiny_two_inputs" / "config.yaml").read_text()
    path.write_text(text.replace("      runtime: [-1, 1]\n      optimization: {min: [1, 1], opt: [1, 1], max: [4, 1]}", "      runtime: [1, 1]"))
    profiles = profile_shapes(load_config(path))
    assert profiles["scale"] == ((1, 1), (1, 1), (1, 1))
    assert profiles["tokens"] == ((1, 1), (1, 6), (4, 32))


def test_shapes_outside_the_profile_are_refused_with_the_bounds():
    config = load_config(TINY_CNN)
    check_in_profile(config, {"image": (8, 3, 64, 8)})
    with pytest.raises(DeployBenchError, match=r"dim 0 \(batch_size\) is 9, the profile allows 1..8 .*inputs\[0\].shapes.optimization"):
        check_in_profile(config, {"image": (9, 3, 16, 16)})


def settings_for(onnx, precision="fp16", workspace=0):
    return build_settings(onnx_path=onnx, precision=precision, config=load_config(TINY_CNN), workspace_bytes=workspace,
                          strongly_typed=True, trt_version="10.13", gpu_name="H100", compute_capability="9.0")  # fmt: skip


def write_cache(tmp_path, settings):
    plan = tmp_path / "engine.plan"
    plan.write_bytes(b"serialized-engine" * 100)
    record_built(plan, settings)
    return plan


def test_cache_is_reused_only_when_every_build_setting_matches(tmp_path):
    onnx = tmp_path / "model.onnx"
    onnx.write_bytes(b"graph-v1")
    settings = settings_for(onnx)
    assert settings_hash(settings) == settings_hash(settings_for(onnx))  # stable
    plan = write_cache(tmp_path, settings)
    assert is_current(plan, settings) == (True, "reused from cache")
    assert is_current(plan, settings_for(onnx, precision="fp32")) == (False, "rebuilding: precision changed")
    assert is_current(plan, settings_for(onnx, workspace=1 << 30)) == (False, "rebuilding: workspace_bytes changed")
    onnx.write_bytes(b"graph-v2")  # re-exported weights: same path, new content
    assert is_current(plan, settings_for(onnx)) == (False, "rebuilding: onnx_sha256 changed")
    other_gpu = {**settings, "gpu": "L4", "compute_capability": "8.9"}
    assert is_current(plan, other_gpu) == (False, "rebuilding: compute_capability, gpu changed")


def test_a_truncated_cached_engine_is_rebuilt(tmp_path):
    onnx = tmp_path / "model.onnx"
    onnx.write_bytes(b"graph")
    settings = settings_for(onnx)
    plan = write_cache(tmp_path, settings)
    plan.write_bytes(plan.read_bytes()[:100])
    reusable, why = is_current(plan, settings)
    assert not reusable and "truncated or corrupted" in why
    assert is_current(tmp_path / "none.plan", settings) == (False, "not cached")


class RecordingContext:
    """Stands in for IExecutionContext (TensorRT cannot be installed here) and enforces its rule:
    enqueueV3 fails unless every input shape was set; output shapes exist only once inputs are set."""

    def __init__(self, inputs):
        self.inputs, self.shapes, self.calls = inputs, {}, []

    def set_input_shape(self, name, shape):
        self.calls.append(("set_input_shape", name))
        self.shapes[name] = shape
        return True

    def infer_shapes(self):
        self.calls.append(("infer_shapes",))
        return [n for n in self.inputs if n not in self.shapes]

    def get_tensor_shape(self, name):
        self.calls.append(("get_tensor_shape", name))
        return (self.shapes["tokens"][0], 8)

    def set_tensor_address(self, name, address):
        self.calls.append(("set_tensor_address", name))
        return True

    def execute_async_v3(self, stream):
        self.calls.append(("execute_async_v3",))
        if set(self.shapes) != set(self.inputs):
            raise RuntimeError("IExecutionContext::enqueueV3: Error Code 3: API Usage Error (Not all shapes are specified)")
        return True


def test_every_input_shape_is_set_before_addresses_and_execution():
    context = RecordingContext(["tokens", "scale"])
    inputs = {"tokens": np.zeros((3, 6), np.int64), "scale": np.zeros((3, 1), np.float32)}  # scale is static in spirit
    outputs = bind_and_execute(context, inputs, ["pooled"], lambda n, s: np.empty(s, np.float32), id, stream_handle=0)
    assert outputs["pooled"].shape == (3, 8)
    names = [c[0] for c in context.calls]
    assert names == ["set_input_shape", "set_input_shape", "infer_shapes", "get_tensor_shape",
                     "set_tensor_address", "set_tensor_address", "set_tensor_address", "execute_async_v3"]  # fmt: skip
    assert {c[1] for c in context.calls if c[0] == "set_input_shape"} == {"tokens", "scale"}


def test_a_missing_input_shape_stops_before_execute():
    context = RecordingContext(["tokens", "scale"])
    with pytest.raises(DeployBenchError, match=r"TensorRT input shapes still unspecified: \['scale'\]"):
        bind_and_execute(context, {"tokens": np.zeros((1, 6))}, ["pooled"], lambda n, s: np.empty(s), id, 0)
    assert ("execute_async_v3",) not in context.calls


def test_tensorrt_engine_is_listed_unavailable_with_the_reason():
    try:
        import tensorrt  # noqa: F401

        pytest.skip("tensorrt is installed here")
    except ImportError:
        pass
    reason = engine_availability("tensorrt")
    assert reason.startswith("no TensorRT Python package is importable (tensorrt: No module named 'tensorrt'; ")
    assert "tensorrt_rtx_bindings: " in reason and "deploybench[gpu]" in reason


def test_tensorrt_module_resolution_takes_tensorrt_for_rtx_when_it_is_the_one_installed(tmp_path, monkeypatch):
    """An RTX machine with only TensorRT for RTX: the engine must find it, by default and when named."""
    import sys

    from framework.engines.tensorrt_native import import_tensorrt

    (tmp_path / "tensorrt_rtx_bindings.py").write_text("__version__ = 'rtx-stand-in'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # None in sys.modules: `import tensorrt` raises ImportError
    try:
        assert import_tensorrt().__version__ == "rtx-stand-in"
        assert import_tensorrt("tensorrt_rtx_bindings").__version__ == "rtx-stand-in"
        with pytest.raises(DeployBenchError, match=r"no TensorRT Python package is importable \(tensorrt: "):
            import_tensorrt("tensorrt")
    finally:
        sys.modules.pop("tensorrt_rtx_bindings", None)


@pytest.mark.tensorrt
@pytest.mark.gpu
def test_native_tensorrt_builds_caches_and_agrees(fixture_registry, tmp_path):
    from framework.settings import MeasureSettings, SweepSettings
    from framework.sweep.runner import run_model

    measure = MeasureSettings(iterations=10, warmup=2, min_duration=0)
    settings = SweepSettings(engines=("tensorrt",), precisions=("fp32", "fp16"), batch_sizes=(1, 4), measure=measure, output=tmp_path)
    first = [r.to_json() for r in run_model(fixture_registry.get("tiny_cnn"), [None], settings, report=lambda _: None)]
    assert all(r["status"] == "ok" for r in first), first
    assert all(r["engine_settings"]["engine_layers"] > 0 for r in first)
    second = [r.to_json() for r in run_model(fixture_registry.get("tiny_cnn"), [None], settings, report=lambda _: None)]
    assert {r["engine_settings"]["engine_cache"] for r in second} == {"cached engine reused"}
