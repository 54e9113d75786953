"""The engines this framework knows, imported lazily so ``import framework`` needs no vendor library.

Adding a runtime: write one module with an ``Engine`` subclass and add one line here.
"""

from __future__ import annotations

import functools
import importlib

from framework.engines.base import PRECISIONS, Engine, ModelArtifacts

ENGINES: dict[str, str] = {
    "pytorch-cpu": "framework.engines.pytorch_cpu:PyTorchCPUEngine",
    "onnxruntime-cpu": "framework.engines.onnxruntime_cpu:OnnxRuntimeCPUEngine",
    "pytorch-cuda": "framework.engines.pytorch_cuda:PyTorchCUDAEngine",
    "onnxruntime-cuda": "framework.engines.onnxruntime_cuda:OnnxRuntimeCUDAEngine",
    "onnxruntime-tensorrt": "framework.engines.onnxruntime_tensorrt:OnnxRuntimeTensorRTEngine",
    "tensorrt": "framework.engines.tensorrt_native:TensorRTEngine",
}


def engine_class(name: str) -> type[Engine]:
    if name not in ENGINES:
        raise KeyError(f"unknown engine {name!r}; known engines: {', '.join(ENGINES)}")
    module_name, class_name = ENGINES[name].split(":")
    return getattr(importlib.import_module(module_name), class_name)


@functools.lru_cache(maxsize=None)
def engine_availability(name: str) -> str | None:
    """None when the engine can run here, else why not. Import failures count as 'cannot run'.

    Cached: what a machine can run does not change within a process, and the probes (imports that fail,
    loading TensorRT's libraries) would otherwise repeat for every experiment."""
    try:
        return engine_class(name).availability()
    except ImportError as exc:
        return f"cannot import its module: {exc}"


__all__ = ["ENGINES", "PRECISIONS", "Engine", "ModelArtifacts", "engine_availability", "engine_class"]
