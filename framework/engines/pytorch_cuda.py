"""PyTorch on CUDA, run the way a careful user would: fp16, channels_last, CUDA graphs, torch.compile.

Options (``--option NAME=VALUE``):
  channels_last  (default true)  4-D float inputs and the module in NHWC memory format: tensor cores prefer it.
  cuda_graph     (default false) capture one inference and replay it; static shapes only.
  compile_shapes (default "")    torch.compile's dynamic: "" its default, "static" (False), "dynamic" (True).
  compile        (default "")    a torch.compile mode ("default", "reduce-overhead", "max-autotune",
                                 "max-autotune-no-cudagraphs"); compiled in ``prepare``, recorded as
                                 compile_s, never in any latency (first inference included).
Everything runs on one dedicated stream; the host step copies from pinned host memory and back.
"""

from __future__ import annotations

import copy

import numpy as np

from framework.engines._cuda import cuda_unavailable_reason, pinned_round_trip
from framework.engines._torch import COMPILE_MODES, COMPILE_SHAPES, compile_module, timed_first_call
from framework.engines.base import Engine
from framework.torch_outputs import named_outputs, output_tensors


class PyTorchCUDAEngine(Engine):
    name = "pytorch-cuda"
    runtime = "pytorch"
    device = "cuda"
    precisions = ("fp32", "fp16")
    options = {"channels_last": True, "cuda_graph": False, "compile": "", "compile_shapes": "", "attention": ""}
    option_choices = {"compile": ("", *COMPILE_MODES), "compile_shapes": tuple(COMPILE_SHAPES)}
    uses_torch = True  # host threads: torch.set_num_threads(threads) while loaded

    @classmethod
    def availability(cls) -> str | None:
        return cuda_unavailable_reason()

    @classmethod
    def tuning_space(cls, config, precision: str, batch_size: int) -> list[dict]:
        """CUDA graphs remove launch costs (small batches); compile fuses kernels (large ones); both together
        beat either; channels_last only matters for images; max-autotune last, as it compiles for minutes."""
        space = [{}, {"cuda_graph": True}, {"compile": "default", "cuda_graph": True}, {"compile": "default"}, {"compile": "reduce-overhead"}]
        if any(len(s.runtime) == 4 for s in config.inputs):
            space += [{"channels_last": False}, {"channels_last": False, "cuda_graph": True}]
        return space + [{"compile": "max-autotune-no-cudagraphs", "cuda_graph": True}]

    @classmethod
    def expected_tuning_s(cls, options: dict) -> float:
        return 300.0 if str(options.get("compile", "")).startswith("max-autotune") else 0.0  # autotuning every kernel

    def _load(self) -> None:
        import torch

        self.torch = torch
        self.dtype = torch.float16 if self.precision == "fp16" else torch.float32
        # A copy: nn.Module.to() works in place, and the shared module must stay the CPU fp32 reference.
        module = copy.deepcopy(self.artifacts.get_module(self.settings["attention"])).to("cuda", dtype=self.dtype).eval()
        if self._channels_last():
            module = module.to(memory_format=torch.channels_last)
        self.module = compile_module(module, self.settings["compile"], self.artifacts.cache_dir, self.settings["compile_shapes"])
        self.stream = torch.cuda.Stream()
        self.compile_s = None

    def _channels_last(self) -> bool:
        return bool(self.settings["channels_last"]) and any(len(s.runtime) == 4 for s in self.config.inputs)

    def _to_device(self, array: np.ndarray):
        tensor = self.torch.from_numpy(array).to("cuda", non_blocking=False)
        if tensor.is_floating_point():
            tensor = tensor.to(self.dtype)
            if tensor.dim() == 4 and self._channels_last():
                tensor = tensor.contiguous(memory_format=self.torch.channels_last)
        return tensor

    def _forward(self, tensors):
        with self.torch.inference_mode():
            return self.module(*tensors)

    def _compile_once(self, tensors) -> None:
        """The first call of a compiled module compiles it: time that apart from every latency."""
        if self.settings["compile"] and self.compile_s is None:

            def first_call():
                with self.torch.cuda.stream(self.stream):
                    self._forward(tensors)
                self.stream.synchronize()

            self.compile_s = timed_first_call(first_call)

    def _prepare(self, inputs: dict[str, np.ndarray]) -> float | None:
        self._compile_once([self._to_device(inputs[n]) for n in self.config.input_names])
        return self.compile_s

    def _graphed(self, static_inputs):
        """Capture one forward on ``static_inputs``; return (replay, static outputs)."""
        torch = self.torch
        with torch.cuda.stream(self.stream):
            for _ in range(3):  # let cuDNN pick algorithms and allocators settle before capture
                self._forward(static_inputs)
        self.stream.synchronize()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, stream=self.stream), torch.inference_mode():
            static_out = self.module(*static_inputs)
        return graph.replay, static_out

    def _infer(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        tensors = [self._to_device(inputs[n]) for n in self.config.input_names]
        self._compile_once(tensors)
        with self.torch.cuda.stream(self.stream):
            out = self._forward(tensors)
            result = named_outputs(out, self.config.output_names)
        return {k: v.astype(np.float32) if v.dtype == np.float16 else v for k, v in result.items()}

    def _make_device_step(self, inputs: dict[str, np.ndarray]):
        tensors = [self._to_device(inputs[n]) for n in self.config.input_names]
        self._compile_once(tensors)
        if self.settings["cuda_graph"]:
            replay, _ = self._graphed(tensors)
            return replay, self.stream
        forward = self._forward
        return (lambda: forward(tensors)), self.stream

    def _make_step(self, inputs: dict[str, np.ndarray]):
        """Pinned host input -> device -> model -> pinned host output, then synchronise."""
        host = [inputs[n] for n in self.config.input_names]
        device = [self._to_device(a) for a in host]
        self._compile_once(device)
        if self.settings["cuda_graph"]:
            run, static_out = self._graphed(device)
            return pinned_round_trip(self.stream, host, device, run, lambda: output_tensors(static_out, self.config.output_names))
        state = {}
        forward = self._forward
        return pinned_round_trip(self.stream, host, device, lambda: state.__setitem__("out", forward(device)),
                                 lambda: output_tensors(state["out"], self.config.output_names))  # fmt: skip

    def _describe(self) -> dict:
        return {
            "torch": self.torch.__version__,
            "threads": self.torch.get_num_threads(),
            "gpu": self.torch.cuda.get_device_name(),
            "dtype": str(self.dtype),
            "channels_last": self._channels_last(),
            "cuda_graph": bool(self.settings["cuda_graph"]),
            "compile": self.settings["compile"] or None,
            "attention": self.settings["attention"] or None,
            "compile_s": self.compile_s,
        }

    def _close(self) -> None:
        import torch

        self.module = None
        torch.cuda.empty_cache()
