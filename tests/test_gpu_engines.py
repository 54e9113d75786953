"""GPU engines on the tiny fixture model: run on a CUDA machine, skipped elsewhere with the reason shown."""

import pytest

from framework.runner import SweepSettings, run_model

pytestmark = pytest.mark.gpu


def ort_has_cuda() -> bool:
    import onnxruntime as ort

    return "CUDAExecutionProvider" in ort.get_available_providers()


@pytest.mark.parametrize("options", [{}, {"cuda_graph": True}])
def test_gpu_engines_measure_two_ways_and_agree_with_pytorch(fixture_registry, tmp_path, options):
    engines = ["pytorch-cuda"] + (["onnxruntime-cuda"] if ort_has_cuda() else [])
    settings = SweepSettings(engines=engines, precisions=["fp32", "fp16"], batch_sizes=[1, 4], iterations=20, warmup=3,
                             output=tmp_path, engine_options=options)  # fmt: skip
    records = run_model(fixture_registry.get("tiny_cnn"), [None], settings, report=lambda _: None)
    assert len(records) == len(engines) * 4
    for r in records:
        assert r["status"] == "ok", r
        assert r["clock"] == "perf_counter_ns" and r["latency_model"]["n"] == 20
        assert 0 < r["latency_model"]["median_ms"] and 0 < r["latency"]["median_ms"]
        tolerance = 1e-4 if r["precision"] == "fp32" else 2e-2
        assert r["agreement"]["worst"]["max_abs_error"] < tolerance, r["agreement"]
    assert (tmp_path / "tiny_cnn" / "plots" / "16x16x3" / "cuda_time_measurements.jpg").is_file()
    header = (tmp_path / "tiny_cnn" / "16x16x3" / "pytorch-cuda__fp16__bs4" / "latencies.csv").read_text().splitlines()[0]
    assert header == "iteration,latency_ms,latency_model_ms"


def test_tensorrt_provider_without_tensorrt_libraries_is_unavailable_not_measured(fixture_registry, tmp_path):
    from framework.engines import engine_availability

    reason = engine_availability("onnxruntime-tensorrt")
    if reason is None:
        pytest.skip("TensorRT libraries are present here; the fallback path needs a machine without them")
    settings = SweepSettings(engines=["onnxruntime-tensorrt"], iterations=3, warmup=1, output=tmp_path)
    (record,) = run_model(fixture_registry.get("tiny_cnn"), [None], settings, report=lambda _: None)
    assert record["status"] == "unavailable" and "latency" not in record
    assert record["reason"] == reason
