"""The interface every engine implements, so each runtime is one new file.

An engine turns named numpy inputs into named numpy outputs. The measurement loop never calls ``infer``
directly: it asks for ``make_step(inputs)``, a zero-argument callable doing exactly the work to be timed,
so an engine can move inputs to the device or bind buffers once, outside the timed region.

GPU engines are measured two ways: ``make_step`` is host inputs to host outputs (latency-all: copies
included, host clock), ``make_device_step`` is device compute only with inputs already on the device
(latency-model: CUDA events on the stream the engine runs on).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, ClassVar

import numpy as np

from framework.config import ModelConfig

PRECISIONS = ("fp32", "fp16", "int8")


@dataclass
class ModelArtifacts:
    """What engines build from: the config, the PyTorch module and the ONNX files.

    In an isolated child process only PyTorch engines need the module, so it can be given as
    ``module_factory`` and is then loaded on first use: an ONNX Runtime child never holds its weights twice.
    """

    config: ModelConfig
    module: object | None = None  # torch.nn.Module in eval mode
    onnx_paths: dict[str, Path] = field(default_factory=dict)  # precision -> ONNX file with that precision in the graph
    cache_dir: Path | None = None  # where engines may keep build caches
    module_factory: Callable[[], object] | None = None

    def get_module(self):
        if self.module is None and self.module_factory is not None:
            self.module = self.module_factory()
        if self.module is None:
            raise ValueError("this engine needs the PyTorch module, and none was loaded")
        return self.module

    def onnx_for(self, precision: str) -> Path:
        if precision not in self.onnx_paths:
            raise ValueError(f"no ONNX file with {precision} in the graph was produced (have: {sorted(self.onnx_paths)})")
        return self.onnx_paths[precision]


class Engine(ABC):
    name: ClassVar[str]  # what users type: --engines pytorch-cpu
    runtime: ClassVar[str]  # library family: pytorch, onnxruntime, tensorrt
    device: ClassVar[str]  # cpu or cuda: decides which plot an engine lands in
    precisions: ClassVar[tuple[str, ...]] = ("fp32",)
    # The ONNX graph a precision runs, where it is not the precision's own (see precision.INT8_VARIANTS).
    graphs: ClassVar[dict[str, str]] = {}
    needs_onnx: ClassVar[bool] = False
    options: ClassVar[dict[str, object]] = {}  # option name -> default; set with --option NAME=VALUE
    # Whether the device step returns before the GPU has finished. Only then is the host time of the call
    # its enqueue time, and the host-bound rule meaningful (ONNX Runtime's Run blocks until the GPU is done).
    device_step_returns_early: ClassVar[bool] = True

    def __init__(self, artifacts: ModelArtifacts, precision: str, options: dict | None = None) -> None:
        self.artifacts = artifacts
        self.config = artifacts.config
        self.precision = precision
        self.settings = {**type(self).options, **{k: v for k, v in (options or {}).items() if k in type(self).options}}

    @classmethod
    def graph_for(cls, precision: str) -> str:
        return cls.graphs.get(precision, precision)

    @property
    def onnx_path(self) -> Path:
        """The ONNX graph this engine runs at its precision."""
        return self.artifacts.onnx_for(self.graph_for(self.precision))

    @classmethod
    def availability(cls) -> str | None:
        """None when this machine can run the engine, else the reason it cannot (shown by ``deploybench list``)."""
        return None

    @abstractmethod
    def load(self) -> None:
        """Build the session, engine or device copy of the model. Timed separately as build time."""

    @abstractmethod
    def infer(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Host inputs in, host outputs out, named as in the config."""

    def make_step(self, inputs: dict[str, np.ndarray]) -> Callable[[], object]:
        """The exact work one timed iteration does. Default: a full ``infer``."""
        return lambda: self.infer(inputs)

    def make_device_step(self, inputs: dict[str, np.ndarray]) -> tuple[Callable[[], object], object] | None:
        """GPU engines: ``(step, torch.cuda.Stream)`` computing on inputs already on the device. CPU: None."""
        return None

    def describe(self) -> dict:
        """Settings worth recording next to the figures (threads, providers, ...)."""
        return {}

    def close(self) -> None:
        """Free what ``load`` took."""
