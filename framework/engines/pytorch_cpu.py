"""Eager PyTorch on the CPU, fp32, under ``torch.inference_mode``."""

from __future__ import annotations

import numpy as np

from framework.engines.base import Engine
from framework.torch_outputs import named_outputs


class PyTorchCPUEngine(Engine):
    name = "pytorch-cpu"
    runtime = "pytorch"
    device = "cpu"
    uses_torch = True  # torch.set_num_threads(threads) while loaded

    @classmethod
    def availability(cls) -> str | None:
        try:
            import torch  # noqa: F401
        except ImportError as exc:
            return f"torch is not importable ({exc}); pip install torch (deploybench depends on it: pip install deploybench)"
        return None

    def _load(self) -> None:
        import torch

        self.torch = torch
        self.module = self.artifacts.get_module().to("cpu").eval()

    def _tensors(self, inputs: dict[str, np.ndarray]) -> list:
        # from_numpy shares memory: no copy, so the timed step measures the model, not a conversion.
        return [self.torch.from_numpy(inputs[name]) for name in self.config.input_names]

    def _infer(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        with self.torch.inference_mode():
            return named_outputs(self.module(*self._tensors(inputs)), self.config.output_names)

    def _make_step(self, inputs: dict[str, np.ndarray]):
        module, tensors, inference_mode = self.module, self._tensors(inputs), self.torch.inference_mode

        def step():
            with inference_mode():
                return module(*tensors)

        return step

    def _describe(self) -> dict:
        return {"torch": self.torch.__version__, "threads": self.torch.get_num_threads()}

    def _close(self) -> None:
        self.module = None  # the shared module itself stays in ModelArtifacts: only this engine's reference goes
