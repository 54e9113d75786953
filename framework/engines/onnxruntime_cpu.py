"""ONNX Runtime with its CPU execution provider, all graph optimizations, ``threads`` intra-op threads."""

from __future__ import annotations

from framework.engines._onnxruntime import OnnxRuntimeEngine


class OnnxRuntimeCPUEngine(OnnxRuntimeEngine):
    name = "onnxruntime-cpu"
    device = "cpu"
    provider = "CPUExecutionProvider"
    precisions = ("fp32", "fp16", "int8")  # fp16 runs, mostly through casts: kept to show what it costs on a CPU
