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

from framework.engines._cuda import pinned_round_trip
from framework.engines.onnxruntime_base import OnnxRuntimeEngine, create_verified_session
from framework.engines.pytorch_cuda import cuda_unavailable_reason
from framework.torch_outputs import named_outputs, numpy_dtype, torch_dtype


class OnnxRuntimeCUDAEngine(OnnxRuntimeEngine):
    name = "onnxruntime-cuda"
    device = "cuda"
    provider = "CUDAExecutionProvider"
    precisions = ("fp32", "fp16")
    options = {"prefer_nhwc": True, "cuda_graph": False}
    device_step_returns_early = False  # run_with_iobinding synchronises: measured on the H100, "enqueue" = device time

    @classmethod
    def availability(cls) -> str | None:
        return cuda_unavailable_reason() or super().availability()

    def provider_options(self) -> dict:
        # No device_id: 0 is the default, and ONNX Runtime >= 1.26 logs "No registered plugin EP device found"
        # for every session given one (it looks for a plugin EP first); describe() still records it.
        return {
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
            self.onnx_path, [(self.provider, self.provider_options())], self.session_options()
        )
        self.output_names = self.config.output_names

    def _binding_for(self, inputs: dict[str, np.ndarray]) -> dict:
        """The one IO binding of this session, on device buffers that never move; ``inputs`` copied in.

        Every path (``infer``, host step, device step) goes through it, because with ``cuda_graph`` ORT captures
        its graph on the first run and replays it on the same addresses: a plain ``session.run`` first would
        capture ORT's internal buffers instead, and later runs would replay on stale inputs.
        """
        torch = self.torch
        shapes = {n: tuple(inputs[n].shape) for n in self.config.input_names}
        if getattr(self, "_io", None) is None or self._io["shapes"] != shapes:
            dev_in = {n: torch.from_numpy(inputs[n]).to("cuda") for n in self.config.input_names}
            out_types = {o.name: o.type for o in self.session.get_outputs()}
            dev_out = {
                n: torch.empty(shape, dtype=torch_dtype(_ORT_NUMPY_DTYPES[out_types[n]]), device="cuda")
                for n, shape in self._output_shapes(inputs).items()
            }
            binding = self.session.io_binding()
            for name, t in {**dev_in, **dev_out}.items():
                bind = binding.bind_input if name in dev_in else binding.bind_output
                bind(name, "cuda", 0, numpy_dtype(t.dtype), tuple(t.shape), t.data_ptr())
            session = self.session
            self._io = {"shapes": shapes, "in": dev_in, "out": dev_out, "run": lambda: session.run_with_iobinding(binding)}
        else:
            for n, t in self._io["in"].items():
                t.copy_(torch.from_numpy(inputs[n]))
        torch.cuda.synchronize()
        return self._io

    def _output_shapes(self, inputs: dict[str, np.ndarray]) -> dict[str, tuple]:
        """Output shapes for these inputs, from PyTorch on the CPU: an ORT run here would capture its CUDA graph."""
        torch = self.torch
        with torch.inference_mode():
            result = self.artifacts.get_module()(*(torch.from_numpy(inputs[n]) for n in self.config.input_names))
        return {n: a.shape for n, a in named_outputs(result, self.output_names).items()}

    def infer(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        io = self._binding_for(inputs)
        with self.torch.cuda.stream(self.stream):
            io["run"]()
        self.stream.synchronize()
        return {n: io["out"][n].cpu().numpy() for n in self.output_names}

    def make_device_step(self, inputs: dict[str, np.ndarray]):
        return self._binding_for(inputs)["run"], self.stream

    def make_step(self, inputs: dict[str, np.ndarray]):
        """Pinned host input -> bound device buffers -> run -> pinned host output, then synchronise."""
        io = self._binding_for(inputs)
        return pinned_round_trip(self.stream, [inputs[n] for n in io["in"]], list(io["in"].values()), io["run"],
                                 lambda: list(io["out"].values()))  # fmt: skip

    def describe(self) -> dict:
        options = self.session.get_provider_options().get(self.provider, {})
        keep = ("cudnn_conv_algo_search", "prefer_nhwc", "enable_cuda_graph", "device_id")
        return {**super().describe(), "provider_options": {k: options.get(k) for k in keep}}


_ORT_NUMPY_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(int64)": np.int64,
                     "tensor(int32)": np.int32, "tensor(bool)": np.bool_}  # fmt: skip
