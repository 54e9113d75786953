"""ONNX Runtime with the CUDA execution provider, IO binding, on a stream the framework owns.

Options (``--option NAME=VALUE``):
  prefer_nhwc  (default true)  let the CUDA EP run convolutions in NHWC (tensor-core friendly).
  cuda_graph   (default false) the EP captures the run once and replays it; needs fixed buffer addresses,
                               which IO binding on preallocated buffers gives.
cuDNN algorithm search is EXHAUSTIVE. Buffers are torch CUDA tensors bound by address, output buffers sized
from the session's output metadata and the config (never by running the model); ORT computes on the
framework's torch stream (``user_compute_stream``), so CUDA events on that stream bracket exactly its work.
The binding itself lives in ``_onnxruntime.OnnxRuntimeCUDABindingEngine``, shared with the TensorRT EP engine.
"""

from __future__ import annotations

from framework.engines._onnxruntime import OnnxRuntimeCUDABindingEngine


class OnnxRuntimeCUDAEngine(OnnxRuntimeCUDABindingEngine):
    name = "onnxruntime-cuda"
    provider = "CUDAExecutionProvider"
    precisions = ("fp32", "fp16")
    options = {"prefer_nhwc": True, "cuda_graph": False}

    @classmethod
    def tuning_space(cls, config, precision: str, batch_size: int) -> list[dict]:
        return [{}, {"cuda_graph": True}, {"prefer_nhwc": False}, {"prefer_nhwc": False, "cuda_graph": True}]

    def provider_list(self) -> list:
        return [(self.provider, self.cuda_provider_options())]

    def _describe(self) -> dict:
        options = self.session.get_provider_options().get(self.provider, {})
        keep = ("cudnn_conv_algo_search", "prefer_nhwc", "enable_cuda_graph", "device_id")
        return {**super()._describe(), "provider_options": {k: options.get(k) for k in keep}}
