"""Precision lives in the ONNX graph, so one artifact serves every ONNX consumer.

TensorRT 11 removed the FP16/INT8 builder flags (strongly typed networks take their types from the graph),
and ONNX Runtime runs whatever types the graph holds. fp16 is produced here by onnxconverter-common's
float16 conversion, keeping fp32 inputs and outputs so callers feed and read the same arrays at every
precision. int8 (QDQ with calibration) comes with the precision issue.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path

from framework.errors import DeployBenchError

# Ops kept in fp32 on top of the converter's own list: reductions and normalisations that overflow in fp16.
FP16_KEEP_FP32 = ["Softmax", "LayerNormalization", "ReduceSum", "ReduceMean", "Pow", "Sqrt", "Exp", "Log"]


def fp16_settings(source_sha256: str, keep_fp32_ops: list[str] | None = None) -> dict:
    """What an fp16 graph depends on, for the artifact cache."""
    import importlib.metadata

    return {"source_sha256": source_sha256, "converter": importlib.metadata.version("onnxconverter-common"),
            "keep_fp32_ops": FP16_KEEP_FP32 if keep_fp32_ops is None else keep_fp32_ops}  # fmt: skip


def convert_to_fp16(src: Path, dst: Path, keep_fp32_ops: list[str] | None = None) -> float:
    """Write an fp16 copy of ``src`` (fp32 I/O kept) to ``dst``; return the seconds it took."""
    import onnx

    try:
        from onnxconverter_common import float16
    except ImportError as exc:
        raise DeployBenchError("fp16 ONNX graphs need onnxconverter-common: pip install onnxconverter-common") from exc
    start = time.perf_counter()
    block = sorted(set(float16.DEFAULT_OP_BLOCK_LIST) | set(FP16_KEEP_FP32 if keep_fp32_ops is None else keep_fp32_ops))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the converter warns about every clipped constant
        model = float16.convert_float_to_float16(onnx.load(str(src)), keep_io_types=True, op_block_list=block)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.tmp")
    onnx.save(model, str(tmp))
    onnx.checker.check_model(str(tmp))
    tmp.replace(dst)
    return time.perf_counter() - start
