"""The engines this framework knows, imported lazily so ``import framework`` needs no vendor library.

Adding a runtime: write one module with an ``Engine`` subclass and add one line here. Engine modules never
import each other; what several share lives in the underscored modules (``_cuda``, ``_onnxruntime``, ``_tensorrt``).
"""

from __future__ import annotations

import functools
import importlib
import inspect

from framework.engines.base import Engine, EngineStateError, ModelArtifacts, UnknownEngineError
from framework.precisions import PRECISIONS as _PRECISION_TABLE

PRECISIONS: tuple[str, ...] = tuple(_PRECISION_TABLE)  # the names; the facts live in framework.precisions

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
        raise UnknownEngineError(f"unknown engine {name!r}; known engines: {', '.join(ENGINES)}")
    module_name, class_name = ENGINES[name].split(":")
    return getattr(importlib.import_module(module_name), class_name)


_ON_THE_CLUSTER: dict[str, None] = {}  # --executor ray: engines this machine cannot run but a node of the cluster can


def set_cluster_engines(names: list[str]) -> None:
    """The engines the sweep's Ray cluster can run though this machine cannot (``ray_executor.probe_engines``);
    an empty list forgets them."""
    _ON_THE_CLUSTER.clear()
    _ON_THE_CLUSTER.update(dict.fromkeys(names))


def engine_availability(name: str) -> str | None:
    """None when the engine can run here (or, with ``--executor ray``, on a node of the cluster), else why not."""
    return None if name in _ON_THE_CLUSTER else _availability_here(name)


@functools.cache
def _availability_here(name: str) -> str | None:
    """Import failures count as 'cannot run', and so does an engine class left abstract (e.g. without
    ``availability``): it could not be instantiated.

    Cached: what a machine can run does not change within a process, and the probes (imports that fail,
    loading TensorRT's libraries) would otherwise repeat for every experiment."""
    try:
        cls = engine_class(name)
        if inspect.isabstract(cls):
            return f"{cls.__name__} is incomplete: it does not implement {', '.join(sorted(cls.__abstractmethods__))}"
        return cls.availability()
    except ImportError as exc:
        return f"cannot import its module: {exc}"


__all__ = ["ENGINES", "PRECISIONS", "Engine", "EngineStateError", "ModelArtifacts", "UnknownEngineError",
           "engine_availability", "engine_class", "set_cluster_engines"]  # fmt: skip
