"""Eager PyTorch on the CPU, fp32, under ``torch.inference_mode``.

Options (``--option NAME=VALUE``):
  channels_last  (default false) 4-D float inputs and a copy of the module in NHWC memory format (oneDNN's
                                 preferred layout for convolutions).
  compile_shapes (default "")    torch.compile's dynamic: "" its default, "static" (False), "dynamic" (True).
  compile        (default "")    a torch.compile mode; compiled in ``prepare``, recorded as compile_s.
"""

from __future__ import annotations

import copy

import numpy as np

from framework.engines._torch import COMPILE_MODES, COMPILE_SHAPES, compile_module, timed_first_call
from framework.engines.base import Engine, thread_counts
from framework.torch_outputs import named_outputs


class PyTorchCPUEngine(Engine):
    name = "pytorch-cpu"
    runtime = "pytorch"
    device = "cpu"
    options = {"channels_last": False, "compile": "", "compile_shapes": "", "attention": ""}
    option_choices = {"compile": ("", *COMPILE_MODES), "compile_shapes": tuple(COMPILE_SHAPES)}
    uses_torch = True  # torch.set_num_threads(threads) while loaded

    @classmethod
    def availability(cls) -> str | None:
        try:
            import torch  # noqa: F401
        except ImportError as exc:
            return f"torch is not importable ({exc}); pip install torch (deploybench depends on it: pip install deploybench)"
        return None

    @classmethod
    def tuning_space(cls, config, precision: str, batch_size: int) -> list[dict]:
        image = any(len(s.runtime) == 4 for s in config.inputs)
        layouts = [{"channels_last": True}] if image else []
        return [{}, *layouts, *thread_counts(), {"compile": "default"}, *({"compile": "default", **c} for c in layouts)]

    def _load(self) -> None:
        import torch

        self.torch = torch
        module = self.artifacts.get_module(self.settings["attention"]).to("cpu").eval()
        if self._channels_last():  # a copy: the shared module stays the fp32 reference in its own layout
            module = copy.deepcopy(module).to(memory_format=torch.channels_last)
        self.module = compile_module(module, self.settings["compile"], self.artifacts.cache_dir, self.settings["compile_shapes"])
        self.compile_s = None

    def _channels_last(self) -> bool:
        return bool(self.settings["channels_last"]) and any(len(s.runtime) == 4 for s in self.config.inputs)

    def _tensors(self, inputs: dict[str, np.ndarray]) -> list:
        # from_numpy shares memory: no copy, so the timed step measures the model, not a conversion.
        tensors = [self.torch.from_numpy(inputs[name]) for name in self.config.input_names]
        if self._channels_last():  # converted once, before timing
            tensors = [t.contiguous(memory_format=self.torch.channels_last) if t.dim() == 4 and t.is_floating_point() else t for t in tensors]
        return tensors

    def _prepare(self, inputs: dict[str, np.ndarray]) -> float | None:
        if self.settings["compile"] and self.compile_s is None:
            tensors = self._tensors(inputs)
            self.compile_s = timed_first_call(lambda: self._infer_tensors(tensors))
        return self.compile_s

    def _infer_tensors(self, tensors: list) -> dict[str, np.ndarray]:
        with self.torch.inference_mode():
            return named_outputs(self.module(*tensors), self.config.output_names)

    def _infer(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self._infer_tensors(self._tensors(inputs))

    def _make_step(self, inputs: dict[str, np.ndarray]):
        module, tensors, inference_mode = self.module, self._tensors(inputs), self.torch.inference_mode

        def step():
            with inference_mode():
                return module(*tensors)

        return step

    def _describe(self) -> dict:
        return {"torch": self.torch.__version__, "threads": self.torch.get_num_threads(), "channels_last": self._channels_last(),
                "compile": self.settings["compile"] or None, "attention": self.settings["attention"] or None,
                "compile_s": self.compile_s}  # fmt: skip

    def _close(self) -> None:
        self.module = None  # the shared module itself stays in ModelArtifacts: only this engine's reference goes
