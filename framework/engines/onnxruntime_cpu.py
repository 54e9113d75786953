"""ONNX Runtime with its CPU execution provider, all graph optimizations, ``threads`` intra-op threads."""

from __future__ import annotations

from framework.engines._onnxruntime import OnnxRuntimeEngine
from framework.engines.base import thread_counts


class OnnxRuntimeCPUEngine(OnnxRuntimeEngine):
    name = "onnxruntime-cpu"
    device = "cpu"
    provider = "CPUExecutionProvider"
    precisions = ("fp32", "fp16", "int8")  # fp16 runs, mostly through casts: kept to show what it costs on a CPU

    @classmethod
    def tuning_space(cls, config, precision: str, batch_size: int) -> list[dict]:
        return [{}, *thread_counts()]
