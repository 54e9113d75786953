"""ONNX Runtime with the CUDA execution provider, IO binding, on a stream the framework owns.

Options (``--option NAME=VALUE``):
  prefer_nhwc  (default true)  let the CUDA EP run convolutions in NHWC (tensor-core friendly).
  cuda_graph   (default false) the EP captures the run once and replays it; needs fixed buffer addresses,
                               which IO binding on preallocated buffers gives.
cuDNN algorithm search is EXHAUSTIVE. Buffers are torch CUDA tensors bound by address; ORT computes on the
framework's torch stream (``user_compute_stream``), so CUDA events on that stream bracket exactly its work.
"""

from __future__ import annotations

import numpy as np

from framework.engines.onnxruntime_base import OnnxRuntimeEngine, create_verified_session
from framework.engines.pytorch_cuda import cuda_unavailable_reason


class OnnxRuntimeCUDAEngine(OnnxRuntimeEngine):
    name = "onnxruntime-cuda"
    device = "cuda"
    provider = "CUDAExecutionProvider"
    precisions = ("fp32", "fp16")
    options = {"prefer_nhwc": True, "cuda_graph": False}

    @classmethod
    def availability(cls) -> str | None:
        return cuda_unavailable_reason() or super().availability()

    def provider_options(self) -> dict:
        return {
            "device_id": "0",
            "cudnn_conv_algo_search": "EXHAUSTIVE",
            "prefer_nhwc": "1" if self.settings["prefer_nhwc"] else "0",
            "enable_cuda_graph": "1" if self.settings["cuda_graph"] else "0",
            "user_compute_stream": str(self.stream.cuda_stream),
        }

    def load(self) -> None:
        import torch

        self.torch = torch
        self.stream = torch.cuda.Stream()
        self.session = create_verified_session(
            self.artifacts.onnx_for(self.precision), [(self.provider, self.provider_options())], self.session_options()
        )
        self.output_names = self.config.output_names

    def _bound(self, inputs: dict[str, np.ndarray]):
        """Device input and output buffers bound by address; output shapes from one plain run."""
        import onnxruntime as ort

        torch = self.torch
        dev_in = {n: torch.from_numpy(inputs[n]).to("cuda") for n in self.config.input_names}
        shapes = [o.shape for o in self.session.run(self.output_names, inputs)]
        out_types = {o.name: o.type for o in self.session.get_outputs()}
        dev_out = {
            n: torch.empty(s, dtype=_TORCH_DTYPES[out_types[n]](torch), device="cuda") for n, s in zip(self.output_names, shapes)
        }
        binding = self.session.io_binding()
        for name, t in {**dev_in, **dev_out}.items():
            bind = binding.bind_input if name in dev_in else binding.bind_output
            bind(name, "cuda", 0, _NP_DTYPES[str(t.dtype)], tuple(t.shape), t.data_ptr())
        run_options = ort.RunOptions()
        run = lambda: self.session.run_with_iobinding(binding, run_options)  # noqa: E731
        torch.cuda.synchronize()
        return run, dev_in, dev_out

    def make_device_step(self, inputs: dict[str, np.ndarray]):
        run, self._keep_in, self._keep_out = self._bound(inputs)
        return run, self.stream

    def make_step(self, inputs: dict[str, np.ndarray]):
        """Pinned host input -> bound device buffers -> run -> pinned host output, then synchronise."""
        torch = self.torch
        run, dev_in, dev_out = self._bound(inputs)
        pinned_in = {n: torch.from_numpy(inputs[n]).pin_memory() for n in dev_in}
        pinned_out = {n: torch.empty(t.shape, dtype=t.dtype, pin_memory=True) for n, t in dev_out.items()}
        stream = self.stream

        def step():
            with torch.cuda.stream(stream):
                for n, t in dev_in.items():
                    t.copy_(pinned_in[n], non_blocking=True)
                run()
                for n, t in dev_out.items():
                    pinned_out[n].copy_(t, non_blocking=True)
            stream.synchronize()

        return step

    def describe(self) -> dict:
        options = self.session.get_provider_options().get(self.provider, {})
        keep = ("cudnn_conv_algo_search", "prefer_nhwc", "enable_cuda_graph", "device_id")
        return {**super().describe(), "provider_options": {k: options.get(k) for k in keep}}


_NP_DTYPES = {"torch.float32": np.float32, "torch.float16": np.float16, "torch.int64": np.int64, "torch.int32": np.int32,
              "torch.bool": np.bool_, "torch.uint8": np.uint8, "torch.int8": np.int8}  # fmt: skip
_TORCH_DTYPES = {
    "tensor(float)": lambda t: t.float32,
    "tensor(float16)": lambda t: t.float16,
    "tensor(int64)": lambda t: t.int64,
    "tensor(int32)": lambda t: t.int32,
    "tensor(bool)": lambda t: t.bool,
}
