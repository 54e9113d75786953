"""ONNX Runtime with the TensorRT execution provider (CUDA EP behind it for nodes TensorRT does not take).

The profile comes from the config's min/opt/max (``trt_profile_*_shapes``); engines and timing caches live
under the results' cache folder. Precision comes from the ONNX graph; ``trt_fp16_enable`` is set for fp16
graphs only because TensorRT 10 needs that permission to run their fp16 layers in fp16. IO binding, streams
and output sizing are the CUDA EP engine's (``_onnxruntime.OnnxRuntimeCUDABindingEngine``).

When TensorRT's libraries are missing, ONNX Runtime logs an error and runs on CPU: the session check turns
that into ``ProviderFallbackError``, recorded as "unavailable", never as a measurement.
"""

from __future__ import annotations

import ctypes

from framework.engines._onnxruntime import OnnxRuntimeCUDABindingEngine
from framework.engines._tensorrt import check_in_profile, ort_profile_options

TENSORRT_LIBRARIES = ("libnvinfer.so.10", "libnvinfer.so.11", "libnvinfer.so")


class OnnxRuntimeTensorRTEngine(OnnxRuntimeCUDABindingEngine):
    name = "onnxruntime-tensorrt"
    provider = "TensorrtExecutionProvider"
    precisions = ("fp32", "fp16", "int8")
    graphs = {"int8": "int8_symmetric"}  # TensorRT's explicit quantization takes symmetric int8 only
    options = {"workspace_mb": 0, "cuda_graph": False, "prefer_nhwc": True}

    @classmethod
    def tuning_space(cls, config, precision: str, batch_size: int) -> list[dict]:
        return [{}, {"cuda_graph": True}]

    @classmethod
    def availability(cls) -> str | None:
        reason = super().availability()
        if reason:
            return reason
        for library in TENSORRT_LIBRARIES:
            try:
                ctypes.CDLL(library)
                return None
            except OSError:
                continue
        return f"TensorRT's libraries are not loadable ({', '.join(TENSORRT_LIBRARIES)} not found); ONNX Runtime would fall back to CPU"

    def tensorrt_provider_options(self) -> dict:
        cache = self.artifacts.require_cache_dir(self.name) / "ort_tensorrt"
        cache.mkdir(parents=True, exist_ok=True)
        trt_options = {  # no device_id: 0 is the default (see cuda_provider_options)
            "trt_fp16_enable": "1" if self.precision == "fp16" else "0",
            "trt_engine_cache_enable": "1",
            "trt_engine_cache_path": str(cache),
            "trt_timing_cache_enable": "1",
            "trt_timing_cache_path": str(cache),
            "trt_cuda_graph_enable": "1" if self.settings["cuda_graph"] else "0",
            "user_compute_stream": str(self.stream.cuda_stream),
            **ort_profile_options(self.config),
        }
        if self.settings["workspace_mb"]:
            trt_options["trt_max_workspace_size"] = str(int(self.settings["workspace_mb"]) << 20)
        return trt_options

    def provider_list(self) -> list:
        return [(self.provider, self.tensorrt_provider_options()), ("CUDAExecutionProvider", self.cuda_provider_options())]

    def _binding_for(self, inputs):
        check_in_profile(self.config, {n: a.shape for n, a in inputs.items()})
        return super()._binding_for(inputs)

    def _describe(self) -> dict:
        options = self.session.get_provider_options().get(self.provider, {})
        keep = ("trt_fp16_enable", "trt_engine_cache_path", "trt_profile_opt_shapes", "trt_max_workspace_size")
        return {**super()._describe(), "provider_options": {k: options.get(k) for k in keep}}
