"""The interface every engine implements, so each runtime is one new file.

An engine turns named numpy inputs into named numpy outputs. The measurement loop never calls ``infer``
directly: it asks for ``make_step(inputs)``, a zero-argument callable doing exactly the work to be timed,
so an engine can move inputs to the device or bind buffers once, outside the timed region.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, ClassVar

import numpy as np

from framework.config import ModelConfig

PRECISIONS = ("fp32", "fp16", "int8")


@dataclass
class ModelArtifacts:
    """What engines build from: the config, the PyTorch module (loaded once per shape) and the ONNX file."""

    config: ModelConfig
    module: object | None = None  # torch.nn.Module in eval mode
    onnx_path: Path | None = None
    cache_dir: Path | None = None  # where engines may keep build caches


class Engine(ABC):
    name: ClassVar[str]  # what users type: --engines pytorch-cpu
    runtime: ClassVar[str]  # library family: pytorch, onnxruntime, tensorrt
    device: ClassVar[str]  # cpu or cuda: decides which plot an engine lands in
    precisions: ClassVar[tuple[str, ...]] = ("fp32",)
    needs_onnx: ClassVar[bool] = False

    def __init__(self, artifacts: ModelArtifacts, precision: str) -> None:
        self.artifacts = artifacts
        self.config = artifacts.config
        self.precision = precision

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

    def describe(self) -> dict:
        """Settings worth recording next to the figures (threads, providers, ...)."""
        return {}

    def close(self) -> None:
        """Free what ``load`` took."""
