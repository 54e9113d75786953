"""ONNX Runtime with its CPU execution provider, all graph optimizations, default thread pool."""

from __future__ import annotations

from framework.engines._onnxruntime import OnnxRuntimeEngine


class OnnxRuntimeCPUEngine(OnnxRuntimeEngine):
    name = "onnxruntime-cpu"
    device = "cpu"
    provider = "CPUExecutionProvider"
    precisions = ("fp32", "fp16", "int8")  # fp16 runs, mostly through casts: kept to show what it costs on a CPU

    def _describe(self) -> dict:
        threads = self.session.get_session_options().intra_op_num_threads
        return {**super()._describe(), "intra_op_threads": threads or "default (one per physical core)"}
