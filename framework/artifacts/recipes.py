"""The recipes an int8 or fp16 graph can be made with, cheapest first, and how each is built.

The sweep's first recipe (``graphs.INT8_VARIANTS``: static QDQ, MinMax, per-channel weights) fails on some
models (MiniLM: cosine 0.39 against PyTorch). ``ladder`` lists what else the engine can run, each through the
library's own switches: ONNX Runtime's ``quantize_static`` with Entropy or Percentile calibration
(``calibrate_method``, ``extra_options['CalibPercentile']``), per-tensor weights (``per_channel``), symmetric
activations (``extra_options['ActivationSymmetric']``), ``quantize_dynamic`` of the MatMuls with constant
weights (activations quantized at run time by ``DynamicQuantizeLinear``, per tensor: ONNX Runtime has no
per-token mode), and node-level fallback (``nodes_to_exclude``; fp16: onnxconverter-common's
``node_block_list``). TensorRT takes only symmetric QDQ, and the dynamic recipe only ONNX Runtime CPU runs
with integer kernels, so each engine gets its own ladder.
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from framework.artifacts.graphs import (
    FP16_KEEP_FP32,
    _repair_casts,
    _scratch_working_directory,
    calibration_reader,
    int8_recipe,
    pre_process_for_quantization,
)
from framework.errors import DeployBenchError

PERCENTILE = 99.999  # CalibPercentile: the share of each activation's histogram the range keeps
LADDER_VERSION = 1  # bump when the ladder or a recipe's meaning changes: cached searches are redone


@dataclass(frozen=True)
class Recipe:
    """One way to make the low-precision graph: ``kind`` static (QDQ), dynamic or fp16, the quantizer
    settings, and the nodes kept in float (``excluded``) or, for a sensitivity probe, the only node
    converted (``only``)."""

    name: str
    kind: str
    settings: dict = field(default_factory=dict)
    excluded: tuple[str, ...] = ()
    only: str | None = None

    @property
    def label(self) -> str:
        return self.name + (f" -{len(self.excluded)} nodes" if self.excluded else "")

    def excluding(self, nodes) -> Recipe:
        return dataclasses.replace(self, excluded=tuple(nodes), only=None)

    def quantizing_only(self, node: str) -> Recipe:
        return dataclasses.replace(self, excluded=(), only=node)

    def to_dict(self) -> dict:
        return {"name": self.name, "kind": self.kind, "settings": dict(self.settings), "excluded": list(self.excluded), "only": self.only}

    @classmethod
    def from_dict(cls, data: dict) -> Recipe:
        return cls(data["name"], data["kind"], dict(data["settings"]), tuple(data["excluded"]), data.get("only"))


def _static(name: str, variant: str, **changes) -> Recipe:
    return Recipe(name, "static", {**int8_recipe(variant), **changes})


def ladder(graph: str, device: str) -> list[Recipe]:
    """The recipes an engine running ``graph`` (int8, int8_symmetric or fp16) on ``device`` can run, the
    sweep's first recipe first, then the others, cheapest to build and closest to it first."""
    if graph == "fp16":
        return [Recipe("fp16", "fp16", {"keep_fp32_ops": FP16_KEEP_FP32})]
    if graph not in ("int8", "int8_symmetric"):
        raise DeployBenchError(f"no recipe ladder for a {graph} graph; known: int8, int8_symmetric, fp16")
    recipes = [
        _static("static MinMax", graph),
        _static("static Percentile", graph, calibrate_method="Percentile"),
        _static("static Entropy", graph, calibrate_method="Entropy"),
    ]
    if graph == "int8":  # TensorRT's graph is symmetric and per-channel already: these would be the same recipes
        recipes += [_static("static MinMax, symmetric activations", graph, activation_symmetric=True, activation_type="QInt8"),
                    _static("static MinMax, per-tensor weights", graph, per_channel=False)]  # fmt: skip
    if graph == "int8" and device == "cpu":
        recipes.append(Recipe("dynamic MatMul", "dynamic", {"op_types": ["MatMul"], "per_channel": True, "weight_type": "QInt8",
                                                            "reduce_range": int8_recipe(graph)["reduce_range"]}))  # fmt: skip
    return recipes


def build_recipe(recipe: Recipe, source: Path, target: Path, batches: list[dict[str, np.ndarray]]) -> float:
    """Write ``recipe``'s graph of ``source`` (already pre-processed: ``prepare_source``) to ``target``;
    return the seconds it took."""
    start = time.perf_counter()
    target.parent.mkdir(parents=True, exist_ok=True)
    source, target = Path(source).resolve(), Path(target).resolve()
    tmp = target.with_name(f".{target.name}.tmp")
    try:
        with warnings.catch_warnings(), _scratch_working_directory(target.parent):
            warnings.simplefilter("ignore")
            {"static": _quantize_static, "dynamic": _quantize_dynamic, "fp16": _convert_fp16}[recipe.kind](recipe, source, tmp, batches)
        tmp.replace(target)
    finally:
        tmp.unlink(missing_ok=True)
    return time.perf_counter() - start


def prepare_source(source: Path, target: Path) -> None:
    """ONNX Runtime's recommended pre-processing before quantization (shape inference, graph optimization):
    done once per search, every recipe starts from it."""
    source, target = Path(source).resolve(), Path(target).resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    pre_process_for_quantization(source, target)


def _quantize_static(recipe: Recipe, source: Path, target: Path, batches: list) -> None:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    s = recipe.settings
    extra = {"ActivationSymmetric": s["activation_symmetric"], "WeightSymmetric": True, "QuantizeBias": s["quantize_bias"]}
    if s["calibrate_method"] == "Percentile":
        extra["CalibPercentile"] = PERCENTILE
    quantize_static(str(source), str(target), calibration_reader(batches), quant_format=QuantFormat.QDQ, per_channel=s["per_channel"],
                    reduce_range=s["reduce_range"], activation_type=getattr(QuantType, s["activation_type"]),
                    weight_type=getattr(QuantType, s["weight_type"]),
                    calibrate_method=getattr(CalibrationMethod, s["calibrate_method"]), extra_options=extra,
                    nodes_to_quantize=[recipe.only] if recipe.only else None, nodes_to_exclude=list(recipe.excluded) or None)  # fmt: skip


def _quantize_dynamic(recipe: Recipe, source: Path, target: Path, _batches: list) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    s = recipe.settings
    quantize_dynamic(str(source), str(target), op_types_to_quantize=list(s["op_types"]), per_channel=s["per_channel"],
                     reduce_range=s["reduce_range"], weight_type=getattr(QuantType, s["weight_type"]),
                     nodes_to_quantize=[recipe.only] if recipe.only else None, nodes_to_exclude=list(recipe.excluded) or None)  # fmt: skip


def _convert_fp16(recipe: Recipe, source: Path, target: Path, _batches: list) -> None:
    import onnx
    from onnxconverter_common import float16

    model = onnx.load(str(source))
    block = sorted(set(float16.DEFAULT_OP_BLOCK_LIST) | set(recipe.settings["keep_fp32_ops"]))
    nodes = list(recipe.excluded)
    if recipe.only:  # a probe: every other candidate stays in fp32
        nodes = [n for n in fp16_candidates(model, block) if n != recipe.only]
    model = float16.convert_float_to_float16(model, keep_io_types=True, op_block_list=block, node_block_list=nodes or None)
    _repair_casts(model)
    _repair_outputs(model)
    onnx.save(model, str(target))


def _repair_outputs(model) -> None:
    """With a ``node_block_list`` the converter can leave a graph output typed fp16 while the Cast that makes it
    (``keep_io_types``) writes fp32; ONNX Runtime then refuses the graph. The output takes its Cast's type."""
    casts = {n.output[0]: a.i for n in model.graph.node if n.op_type == "Cast" for a in n.attribute if a.name == "to"}
    for output in model.graph.output:
        if output.name in casts:
            output.type.tensor_type.elem_type = casts[output.name]


INTEGER_OPS = ("MatMulInteger", "ConvInteger", "DynamicQuantizeMatMul", "MatMulIntegerToFloat")
FP16_CANDIDATE_OPS = ("Conv", "ConvTranspose", "MatMul", "Gemm", "Add", "Sub", "Mul", "Div", "Relu", "Sigmoid", "Tanh", "Erf")


def fp16_candidates(model, block: list[str]) -> list[str]:
    """Nodes whose fp16 conversion can be undone one by one: the arithmetic the op block list leaves in fp16."""
    return [n.name for n in model.graph.node if n.op_type in FP16_CANDIDATE_OPS and n.op_type not in block and n.name]


def converted_nodes(recipe: Recipe, source_model, built_model) -> list[str]:
    """The nodes of ``source_model`` the recipe turned low-precision in ``built_model``: QDQ consumers
    (static), the MatMuls it made integer (dynamic: ``<node>_quant``), the arithmetic left in fp16."""
    if recipe.kind == "fp16":
        return fp16_candidates(source_model, sorted(set(recipe.settings["keep_fp32_ops"])))
    names = {n.name for n in source_model.graph.node}
    if recipe.kind == "dynamic":  # ``<node>_quant``; a Gemm is split first, into ``<gemm>_MatMul``, the name it excludes by
        return [n.name.removesuffix("_quant") for n in built_model.graph.node if n.op_type in INTEGER_OPS and n.name.endswith("_quant")]
    dequantized = {out for n in built_model.graph.node if n.op_type == "DequantizeLinear" for out in n.output}
    return [n.name for n in built_model.graph.node
            if n.op_type not in ("QuantizeLinear", "DequantizeLinear") and n.name in names and set(n.input) & dequantized]  # fmt: skip
