"""Precision lives in the ONNX graph, so one artifact serves every ONNX consumer.

TensorRT 11 removed the FP16/INT8 builder flags (strongly typed networks take their types from the graph),
and ONNX Runtime runs whatever types the graph holds. fp16 is produced here by onnxconverter-common's
float16 conversion, keeping fp32 inputs and outputs so callers feed and read the same arrays at every
precision. int8 is static post-training quantization to QDQ (quantize/dequantize pairs around each
quantized op) with ONNX Runtime's quantizer: ONNX Runtime runs it with integer kernels, and TensorRT
takes the QDQ scales as explicit quantization.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from framework.artifacts.cache import cached_build, file_sha256
from framework.errors import DeployBenchError
from framework.loader import take_samples

# Ops kept in fp32 on top of the converter's own list: reductions and normalisations that overflow in fp16.
FP16_KEEP_FP32 = ["Softmax", "LayerNormalization", "ReduceSum", "ReduceMean", "Pow", "Sqrt", "Exp", "Log"]


def _repair_casts(model) -> None:
    """The converter retypes a Cast's output to fp16 but can leave the Cast's ``to`` at float (BERT's
    ``mask.to(hidden.dtype)``); ONNX Runtime then refuses the graph. Make ``to`` say what the graph says."""
    import onnx

    declared = {vi.name: vi.type.tensor_type.elem_type for vi in model.graph.value_info}
    for node in model.graph.node:
        if node.op_type != "Cast" or declared.get(node.output[0]) != onnx.TensorProto.FLOAT16:
            continue
        for attribute in node.attribute:
            if attribute.name == "to" and attribute.i == onnx.TensorProto.FLOAT:
                attribute.i = onnx.TensorProto.FLOAT16


def fp16_settings(source_sha256: str, keep_fp32_ops: list[str] | None = None) -> dict:
    """What an fp16 graph depends on, for the artifact cache."""
    import importlib.metadata

    return {"source_sha256": source_sha256, "converter": importlib.metadata.version("onnxconverter-common"), "cast_repair": 1,
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
    _repair_casts(model)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.tmp")
    onnx.save(model, str(tmp))
    onnx.checker.check_model(str(tmp))
    tmp.replace(dst)
    return time.perf_counter() - start


INT8_DEFAULTS = {
    "per_channel": True,  # one scale per output channel of each weight: the accuracy int8 needs
    "activation_type": "QUInt8",  # uint8 activations: the fast path of ONNX Runtime CPU's VNNI kernels (u8s8)
    "weight_type": "QInt8",
    "activation_symmetric": False,
    "quantize_bias": True,
    "calibrate_method": "MinMax",
    "calibration_batch": 8,
}
# The int8 graphs an engine may ask for (``Engine.graphs``): ONNX Runtime CPU runs uint8 activations
# fastest; TensorRT's explicit quantization takes only symmetric int8.
INT8_VARIANTS = {
    "int8": INT8_DEFAULTS,
    # TensorRT also refuses int32 biases (DequantizeLinear takes 8-bit or smaller inputs): biases stay float.
    "int8_symmetric": {**INT8_DEFAULTS, "activation_type": "QInt8", "activation_symmetric": True, "quantize_bias": False},
}


def int8_recipe(variant: str = "int8") -> dict:
    """The quantizer settings of ``variant`` on this machine. On x86 CPUs without VNNI the ONNX Runtime CPU
    graph quantizes weights to 7 bits (``reduce_range``), ONNX Runtime's advice against the saturation of its
    u8s8 kernels there (``environment.cpu_int8_saturates``): on a 2-core AVX2 EPYC, digits_cnn's int8 top-1
    went from 97.8% to 98.3% (fp32: 98.3%), agreement with fp32 from 99.4% to 100%. TensorRT's graph keeps 8."""
    from framework.environment import cpu_int8_saturates

    return {**INT8_VARIANTS[variant], "reduce_range": variant == "int8" and cpu_int8_saturates()}


def int8_settings(source_sha256: str, calibration_sha256: str, variant: str = "int8") -> dict:
    """What an int8 graph depends on, for the artifact cache: the fp32 graph, the calibration data (exact
    bytes, so batch composition counts), the quantizer settings and the ONNX Runtime version."""
    import onnxruntime

    return {"source_sha256": source_sha256, "calibration_sha256": calibration_sha256, "onnxruntime": onnxruntime.__version__,
            **int8_recipe(variant)}  # fmt: skip


def calibration_batches(samples: list[np.ndarray], specs: list, batch: int) -> list[dict[str, np.ndarray]]:
    """Split N samples per input (stacked along each input's batch axis) into feeds of ``batch`` samples."""
    axis = specs[0].batch_axis if specs[0].batch_axis is not None else 0
    count = samples[0].shape[axis]
    return [{spec.name: take_samples(x, spec, start, min(start + batch, count)) for spec, x in zip(specs, samples)}
            for start in range(0, count, batch)]  # fmt: skip


def calibration_digest(batches: list[dict[str, np.ndarray]]) -> str:
    digest = hashlib.sha256()
    for feed in batches:
        for name in sorted(feed):
            digest.update(name.encode())
            digest.update(str(feed[name].shape).encode())
            digest.update(np.ascontiguousarray(feed[name]))
    return digest.hexdigest()


@contextlib.contextmanager
def _scratch_working_directory(beside: Path):
    """Run in a throwaway working directory: when ONNX Runtime's symbolic shape inference gives up it dumps
    ``sym_shape_infer_temp.onnx`` and its weights (90 MB for MiniLM) into the current directory."""
    previous = os.getcwd()
    with tempfile.TemporaryDirectory(prefix=".scratch.", dir=beside) as scratch:
        os.chdir(scratch)
        try:
            yield
        finally:
            os.chdir(previous)


def pre_process_for_quantization(source: Path, target: Path) -> None:
    """ONNX Runtime's recommended pre-processing before quantization: symbolic shape inference and graph
    optimization (batch-norm folding), in a scratch working directory, library warnings silenced."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with warnings.catch_warnings(), _scratch_working_directory(Path(target).parent):
        warnings.simplefilter("ignore")
        try:
            quant_pre_process(str(source), str(target))
        except Exception:  # symbolic shape inference gives up on some graphs (BERT's masks): ONNX's own suffices
            quant_pre_process(str(source), str(target), skip_symbolic_shape=True)


def calibration_reader(batches: list[dict[str, np.ndarray]]):
    """ONNX Runtime's calibration data reader over ``batches`` (input name -> array), each once."""
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.feeds = iter(batches)

        def get_next(self):
            return next(self.feeds, None)

    return Reader()


def quantize_int8(src: Path, dst: Path, batches: list[dict[str, np.ndarray]], variant: str = "int8") -> float:
    """Static post-training quantization to QDQ with ONNX Runtime's quantizer; return the seconds it took.

    The recommended pre-processing runs first (symbolic shape inference and graph optimization, i.e.
    batch-norm folding), then calibration on ``batches``, then per-channel int8 weights with uint8
    activations. A naive QDQ export of ResNet-50 ran 3.5x slower than fp32 on a 16-core Xeon; this
    recipe is what makes int8 pay on CPUs with VNNI.
    """
    try:
        from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    except ImportError as exc:
        raise DeployBenchError("int8 ONNX graphs need onnxruntime's quantizer: pip install 'deploybench[cpu]'") from exc
    settings = int8_recipe(variant)
    start = time.perf_counter()
    dst.parent.mkdir(parents=True, exist_ok=True)
    src, dst = src.resolve(), dst.resolve()
    prepared = dst.with_name(f".{dst.name}.prepared.onnx")
    tmp = dst.with_name(f".{dst.name}.tmp")
    try:
        pre_process_for_quantization(src, prepared)
        with warnings.catch_warnings(), _scratch_working_directory(dst.parent):
            warnings.simplefilter("ignore")
            quantize_static(
                str(prepared), str(tmp), calibration_reader(batches), quant_format=QuantFormat.QDQ, per_channel=settings["per_channel"],
                reduce_range=settings["reduce_range"],
                activation_type=getattr(QuantType, settings["activation_type"]), weight_type=getattr(QuantType, settings["weight_type"]),
                calibrate_method=getattr(CalibrationMethod, settings["calibrate_method"]),
                extra_options={"ActivationSymmetric": settings["activation_symmetric"], "WeightSymmetric": True,
                               "QuantizeBias": settings["quantize_bias"]},
            )  # fmt: skip
        tmp.replace(dst)
    finally:
        prepared.unlink(missing_ok=True)
        tmp.unlink(missing_ok=True)
    return time.perf_counter() - start


@dataclass(frozen=True)
class GraphRecipe:
    """How one ONNX graph is made from the fp32 export. ``key``: what the cached file depends on (source hash,
    calibration data, settings, versions); ``recipe``: the same without the data hashes, which a finished
    experiment's fingerprint covers so that a changed recipe, or a CPU that takes another, measures again."""

    name: str
    calibrated: bool  # needs calibration batches (int8)
    key: Callable[[str, str], dict]  # (source sha256, calibration sha256) -> cache settings
    build: Callable[[Path, Path, list], dict]  # (source, target, calibration batches) -> info kept in the cache

    def recipe(self) -> dict:
        return {k: v for k, v in self.key("", "").items() if k not in ("source_sha256", "calibration_sha256")}


def _int8(variant: str) -> GraphRecipe:
    return GraphRecipe(variant, True, lambda source, data: int8_settings(source, data, variant),
                       lambda source, target, batches: {"quantize_s": quantize_int8(source, target, batches, variant)})  # fmt: skip


# Every graph an engine may ask for (``Engine.graphs``), by name: the one dispatch.
GRAPHS: dict[str, GraphRecipe] = {
    "fp16": GraphRecipe(
        "fp16", False, lambda source, _: fp16_settings(source), lambda source, target, _: {"convert_s": convert_to_fp16(source, target)}
    ),  # fmt: skip
    **{variant: _int8(variant) for variant in INT8_VARIANTS},
}


def graph_recipe(graph: str) -> dict:
    """The recipe of ``graph`` for fingerprints; {} for the fp32 export itself."""
    return GRAPHS[graph].recipe() if graph in GRAPHS else {}


def build_graph(graph: str, source: Path, target: Path, calibration: list[np.ndarray] | None, specs: list) -> tuple[dict, bool, str]:
    """Make (or reuse from the cache) the ONNX graph ``graph`` from ``source``: (info, reused, why)."""
    if graph not in GRAPHS:
        raise DeployBenchError(f"no recipe for a {graph} ONNX graph; known: {', '.join(GRAPHS)}")
    recipe = GRAPHS[graph]
    batches = calibration_batches(calibration, specs, INT8_VARIANTS[graph]["calibration_batch"]) if recipe.calibrated else []
    key = recipe.key(file_sha256(source), calibration_digest(batches) if recipe.calibrated else "")
    return cached_build(target, key, lambda path: recipe.build(source, path, batches))
