"""Eager PyTorch on the CPU, fp32, under ``torch.inference_mode``."""

from __future__ import annotations

import numpy as np

from framework.engines.base import Engine
from framework.torch_outputs import named_outputs


class PyTorchCPUEngine(Engine):
    name = "pytorch-cpu"
    runtime = "pytorch"
    device = "cpu"

    def load(self) -> None:
        import torch

        self.module = self.artifacts.get_module().to("cpu").eval()
        self.torch = torch

    def _tensors(self, inputs: dict[str, np.ndarray]) -> list:
        # from_numpy shares memory: no copy, so the timed step measures the model, not a conversion.
        return [self.torch.from_numpy(inputs[name]) for name in self.config.input_names]

    def infer(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        with self.torch.inference_mode():
            return named_outputs(self.module(*self._tensors(inputs)), self.config.output_names)

    def make_step(self, inputs: dict[str, np.ndarray]):
        module, tensors, inference_mode = self.module, self._tensors(inputs), self.torch.inference_mode

        def step():
            with inference_mode():
                return module(*tensors)

        return step

    def describe(self) -> dict:
        return {"torch": self.torch.__version__, "threads": self.torch.get_num_threads()}
