"""GPU engines on the tiny fixture model: run on a CUDA machine, skipped elsewhere with the reason shown."""

import pytest

from framework.settings import MeasureSettings, SweepSettings
from framework.sweep.runner import run_model

pytestmark = pytest.mark.gpu


def ort_has_cuda() -> bool:
    import onnxruntime as ort

    return "CUDAExecutionProvider" in ort.get_available_providers()


@pytest.mark.parametrize("options", [{}, {"cuda_graph": True}])
def test_gpu_engines_measure_two_ways_and_agree_with_pytorch(fixture_registry, tmp_path, options):
    engines = ["pytorch-cuda"] + (["onnxruntime-cuda"] if ort_has_cuda() else [])
    measure = MeasureSettings(iterations=20, warmup=3, min_duration=0, engine_options=options)
    settings = SweepSettings(engines=tuple(engines), precisions=("fp32", "fp16"), batch_sizes=(1, 4), measure=measure, output=tmp_path)
    records = [r.to_json() for r in run_model(fixture_registry.get("tiny_cnn"), [None], settings, report=lambda _: None)]
    assert len(records) == len(engines) * 4
    for r in records:
        assert r["status"] == "ok", r
        assert r["clock"] == "perf_counter_ns" and r["latency_model"]["n"] == 20
        assert r["latency_model"]["median_ms"] > 0 and r["latency"]["median_ms"] > 0
        assert r["validity"] == "valid"
        # ONNX Runtime's Run blocks until the GPU is done: no enqueue time, so no host-bound verdict for it
        assert (r.get("enqueue_median_ms") is None) == (r["engine"] == "onnxruntime-cuda")
        tolerance = 1e-4 if r["precision"] == "fp32" else 2e-2
        assert r["agreement"]["worst"]["max_abs_error"] < tolerance, r["agreement"]
    size = {(r["engine"], r["precision"]): r["model_size_mb"] for r in records}
    assert 0.45 < size[("pytorch-cuda", "fp16")] / size[("pytorch-cuda", "fp32")] < 0.6, size  # the engine's own fp16 copy
    assert (tmp_path / "tiny_cnn" / "plots" / "16x16x3" / "cuda_time_measurements.jpg").is_file()
    header = (tmp_path / "tiny_cnn" / "16x16x3" / "pytorch-cuda__fp16__bs4" / "latencies.csv").read_text().splitlines()[0]
    assert header == "iteration,latency_ms,latency_model_ms"


def test_tensorrt_provider_without_tensorrt_libraries_is_unavailable_not_measured(fixture_registry, tmp_path):
    from framework.engines import engine_availability

    reason = engine_availability("onnxruntime-tensorrt")
    if reason is None:
        pytest.skip("TensorRT libraries are present here; the fallback path needs a machine without them")
    settings = SweepSettings(engines=("onnxruntime-tensorrt",), measure=MeasureSettings(iterations=3, warmup=1, min_duration=0), output=tmp_path)
    (record,) = [r.to_json() for r in run_model(fixture_registry.get("tiny_cnn"), [None], settings, report=lambda _: None)]
    assert record["status"] == "unavailable" and record["latency"] is None
    assert record["reason"] == reason


def test_onnxruntime_cuda_graph_never_replays_stale_inputs(fixture_registry, tmp_path):
    """With a CUDA graph, a second inference on new data must return the new answer, not the captured one.
    The engine is given no PyTorch module: its output buffers are sized from ONNX Runtime's metadata."""
    import numpy as np
    import torch

    from framework.artifacts.export import export_onnx
    from framework.engines import ModelArtifacts, engine_class

    if not ort_has_cuda():
        pytest.skip("this onnxruntime build has no CUDAExecutionProvider")
    loader = fixture_registry.get("tiny_cnn").create()
    module = loader.load_pytorch_module()
    (x,) = loader.runtime_inputs()
    result = export_onnx(module, [x], loader.config, tmp_path / "m.onnx")
    engine = engine_class("onnxruntime-cuda")(ModelArtifacts(loader.config, None, {"fp32": result.path}, tmp_path), "fp32",
                                              {"cuda_graph": True})  # fmt: skip
    engine.load()
    for data in (x, np.ascontiguousarray(x[:, :, ::-1, :] * 3.0 + 1.0)):
        got = engine.infer({"image": data})["logits"]
        want = module(torch.from_numpy(data)).detach().numpy()
        np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-4)
    step, stream = engine.make_device_step({"image": x})
    step()
    stream.synchronize()
    np.testing.assert_allclose(engine._io["out"]["logits"].cpu().numpy(), module(torch.from_numpy(x)).detach().numpy(), rtol=1e-3, atol=1e-4)


def test_onnxruntime_cuda_rebinds_for_new_shapes_without_the_pytorch_module(fixture_registry, tmp_path):
    """Output buffers follow the batch size and image size from ONNX Runtime's metadata and the config alone."""
    import numpy as np
    import torch

    from framework.artifacts.export import export_onnx
    from framework.engines import ModelArtifacts, engine_class

    if not ort_has_cuda():
        pytest.skip("this onnxruntime build has no CUDAExecutionProvider")
    loader = fixture_registry.get("tiny_cnn").create()
    module = loader.load_pytorch_module()
    (x,) = loader.runtime_inputs()
    result = export_onnx(module, [x], loader.config, tmp_path / "m.onnx")
    with engine_class("onnxruntime-cuda")(ModelArtifacts(loader.config, None, {"fp32": result.path}, tmp_path), "fp32") as engine:
        for shape in ((1, 3, 16, 16), (4, 3, 16, 16), (2, 3, 24, 32)):
            data = np.random.default_rng(0).standard_normal(shape, dtype=np.float32)
            got = engine.infer({"image": data})["logits"]
            assert got.shape == (shape[0], 5)
            np.testing.assert_allclose(got, module(torch.from_numpy(data)).detach().numpy(), rtol=1e-3, atol=1e-4)
