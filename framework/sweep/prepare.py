"""What every experiment of one example shape shares, prepared once in the sweep's process.

``prepare_shape`` loads the module and inputs, hashes weights and data, and exports (or reuses) the ONNX
graph, checked against PyTorch; ``build_graphs`` makes the fp16/int8 graphs the engines need, as its own
step; ``references.References`` writes, once per batch size, the inputs and PyTorch fp32 reference outputs
every experiment of that batch reads (``Job.data_file``). Failures are recorded, never raised: an experiment that
needs what failed is blocked with the reason (``plan.blocked``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from framework.artifacts.cache import cached_build
from framework.artifacts.export import export_onnx, export_settings, model_digest
from framework.artifacts.graphs import build_graph, calibration_digest
from framework.config import ModelConfig
from framework.errors import one_line
from framework.files import safe_component
from framework.loader import make_batch, take_samples
from framework.results.record import ExportInfo
from framework.shapes import shape_tag
from framework.sweep.job import LoaderRef


@dataclass(frozen=True)
class PreparedShape:
    model: str
    tag: str
    shapes: tuple[tuple[int, ...], ...]
    config: ModelConfig
    loader: LoaderRef
    cache_dir: Path
    module: object = field(default=None, repr=False, compare=False)  # torch.nn.Module, eval mode
    inputs: tuple[np.ndarray, ...] = field(default=(), repr=False, compare=False)  # runtime tensors, batch of one
    dataset: tuple | None = field(default=None, repr=False, compare=False)  # the loader's (inputs, labels)
    calibration: tuple[np.ndarray, ...] | None = field(default=None, repr=False, compare=False)
    parameters: int | None = None
    load_s: float | None = None
    model_digest: str | None = None  # weights and config: part of every cache key and fingerprint
    data_digest: str | None = None  # dataset and calibration samples: part of the fingerprint
    export: ExportInfo | None = None
    graphs: dict[str, Path] = field(default_factory=dict)  # graph name (fp32, fp16, int8, ...) -> ONNX file
    graph_errors: dict[str, str] = field(default_factory=dict)
    setup_error: str | None = None
    setup_traceback: str | None = None
    conversion_s: float = 0.0  # time producing (or verifying cached) ONNX graphs
    has_dataset: bool = False
    references: dict[int, Path] = field(default_factory=dict)  # batch size -> its references file (``references.References``)
    stages_s: dict[str, float] = field(default_factory=dict)  # seconds of each step: model, export, graphs, references
    reference_errors: dict[int, tuple[str, str]] = field(default_factory=dict)  # batch size -> (reason, traceback)
    messages: tuple[str, ...] = ()  # what the preparation had to say (export done, cache rebuilt, ...), for the terminal
    warnings: tuple[str, ...] = ()  # warnings it raised (a corrupted cache file, ...), raised again in the sweep's process

    def light(self) -> PreparedShape:
        """Without the module and arrays: what the sweep's process keeps, and what a child sends back."""
        return dataclasses.replace(
            self, module=None, inputs=(), dataset=None, calibration=None, has_dataset=self.has_dataset or self.dataset is not None
        )

    def to_json(self) -> dict:
        light = self.light()
        data = {f.name: getattr(light, f.name) for f in dataclasses.fields(light) if f.compare}
        data.update(config=str(self.config.path), loader=dataclasses.asdict(self.loader), export=self.export.to_dict() if self.export else None,
                    references={str(k): str(v) for k, v in self.references.items()},
                    reference_errors={str(k): list(v) for k, v in self.reference_errors.items()})  # fmt: skip
        return json.loads(json.dumps(data, default=str))

    @classmethod
    def from_json(cls, data: dict) -> PreparedShape:
        from framework.config import load_config

        return cls(**{**data, "shapes": tuple(map(tuple, data["shapes"])), "config": load_config(Path(data["config"])),
                      "loader": LoaderRef(**data["loader"]), "cache_dir": Path(data["cache_dir"]), "export": ExportInfo.from_dict(data["export"]),
                      "graphs": {k: Path(v) for k, v in data["graphs"].items()},
                      "references": {int(k): Path(v) for k, v in data["references"].items()},
                      "reference_errors": {int(k): tuple(v) for k, v in data["reference_errors"].items()}})  # fmt: skip


def prepare_shape(loader_class: type, config: ModelConfig, shapes, model_dir: Path, exporter: str, calibration_samples: int,
                  needs_onnx: bool, report: Callable[[str], None]) -> PreparedShape:  # fmt: skip
    """Load, hash and export once per shape; a failure is kept in ``setup_error`` or ``graph_errors``."""
    loader = loader_class(config, [tuple(s) for s in shapes] if shapes else None)
    tag = shape_tag(loader.example_shapes)
    prepared = PreparedShape(config.name, tag, tuple(map(tuple, loader.example_shapes)), config,
                             LoaderRef(loader_class.__module__, inspect.getfile(loader_class), loader_class.__qualname__),
                             model_dir / "cache" / safe_component(tag))  # fmt: skip
    try:
        prepared = _load(prepared, loader, calibration_samples)
    except Exception as exc:
        report(f"{config.name} {tag}: cannot prepare inputs or module: {one_line(exc)}")
        return dataclasses.replace(prepared, setup_error=one_line(exc), setup_traceback=traceback.format_exc(limit=12))
    return _export(prepared, exporter, report) if needs_onnx else prepared


def _load(prepared: PreparedShape, loader, calibration_samples: int) -> PreparedShape:
    inputs = tuple(loader.runtime_inputs())
    start = time.perf_counter()
    module = loader.load_pytorch_module().eval()
    load_s = time.perf_counter() - start
    dataset = loader.load_dataset()
    calibration = loader.load_calibration_data()
    if calibration is None and dataset is not None:
        calibration = [take_samples(x, spec, 0, min(calibration_samples, x.shape[spec.batch_axis or 0]))
                       for spec, x in zip(loader.config.inputs, dataset[0])]  # fmt: skip
    calibration = tuple(calibration if calibration is not None else inputs)
    return dataclasses.replace(prepared, module=module, inputs=inputs, dataset=dataset, calibration=calibration, load_s=load_s,
                               parameters=sum(p.numel() for p in module.parameters()), model_digest=_model_digest(module, loader),
                               data_digest=_data_digest(calibration, dataset))  # fmt: skip


def _model_digest(module, loader) -> str:
    """The weights and config (``export.model_digest``), buffers the state dict leaves out (non-persistent),
    and the model's code: the source of every module class it is built of and of every Python file of the
    user's own that is imported (the plugin, helper modules beside it, an editable package; not the standard
    library, installed packages, whose versions the machine fingerprint covers, or deploybench itself), so an
    edited ``forward()``, helper or preprocessing measures again."""
    import torch

    digest = hashlib.sha256(model_digest(module, loader.config).encode())
    persistent = set(module.state_dict())
    for name, buffer in module.named_buffers():
        if name not in persistent:
            digest.update(name.encode())
            digest.update(buffer.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy())
    for path in _user_code_files():
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    for cls in sorted({type(m) for m in module.modules()}, key=lambda c: f"{c.__module__}.{c.__qualname__}"):
        try:  # a plugin's module name follows its folder: its source, not its name, says what it computes
            digest.update(inspect.getsource(cls).encode())
        except (OSError, TypeError):  # built in, or no source kept: its name stands for it
            digest.update(f"{cls.__module__}.{cls.__qualname__}".encode())
    digest.update(Path(inspect.getfile(type(loader))).read_bytes())
    return digest.hexdigest()


def _user_code_files() -> list[Path]:
    """Source files of the imported modules that are the user's: outside the standard library, the installed
    packages and deploybench's own package."""
    import sys
    import sysconfig

    excluded = {Path(sysconfig.get_paths()[key]).resolve() for key in ("stdlib", "platstdlib", "purelib", "platlib")}
    excluded.add(Path(__file__).resolve().parent.parent)  # framework/
    files = set()
    for module in list(sys.modules.values()):
        name = getattr(module, "__file__", None)
        if not name or not name.endswith(".py"):
            continue
        path = Path(name).resolve()
        if not any(path.is_relative_to(root) for root in excluded) and path.is_file():
            files.add(path)
    return sorted(files)


def _data_digest(calibration, dataset) -> str:
    """Changed labels, dataset or calibration samples make earlier accuracy and int8 results stale."""
    arrays = list(calibration or [])
    if dataset is not None:
        arrays += list(dataset[0]) + ([np.asarray(dataset[1])] if dataset[1] is not None else [])
    return calibration_digest([{str(i): a for i, a in enumerate(arrays)}])


def _export(prepared: PreparedShape, exporter: str, report: Callable[[str], None]) -> PreparedShape:
    path = prepared.cache_dir / "model.onnx"
    key = export_settings(prepared.model_digest, list(prepared.inputs), exporter)
    where = f"{prepared.model} {prepared.tag}"

    def build(target: Path) -> dict:
        r = export_onnx(prepared.module, list(prepared.inputs), prepared.config, target, exporter=exporter)
        return {"export_s": r.seconds, "onnx_nodes": r.node_count, "onnx_size_mb": r.size_mb, "exporter": r.exporter,
                "opset": r.opset, "export_max_abs_error": r.max_abs_error, "tracer_warnings": list(r.warnings)}  # fmt: skip

    start = time.perf_counter()
    try:
        info, reused, why = cached_build(path, key, build)
    except Exception as exc:
        report(f"{where}: ONNX export failed: {one_line(exc)}")
        return dataclasses.replace(prepared, graph_errors={"fp32": one_line(exc)}, conversion_s=time.perf_counter() - start)
    export = ExportInfo.from_dict({**info, "export_from_cache": reused})
    if reused:
        report(f"{where}: ONNX {why}: {path}")
    else:
        if why != "not cached":
            report(f"{where}: ONNX export {why}")
        report(f"{where}: exported {path} in {export.export_s:.1f} s, {export.onnx_nodes} nodes, matches PyTorch "
               f"(max abs error {export.export_max_abs_error:.2e})")  # fmt: skip
    return dataclasses.replace(prepared, export=export, graphs={"fp32": path}, conversion_s=time.perf_counter() - start)


def build_graphs(prepared: PreparedShape, names: list[str]) -> PreparedShape:
    """Make (or reuse) each named ONNX graph from the fp32 export; a failure is kept per graph."""
    if "fp32" not in prepared.graphs:
        return prepared
    graphs, errors, start = dict(prepared.graphs), dict(prepared.graph_errors), time.perf_counter()
    source = prepared.graphs["fp32"]
    for name in names:
        target = prepared.cache_dir / f"model_{name}.onnx"
        try:
            build_graph(name, source, target, list(prepared.calibration or ()), list(prepared.config.inputs))
            graphs[name] = target
        except Exception as exc:
            errors[name] = one_line(exc)
    return dataclasses.replace(prepared, graphs=graphs, graph_errors=errors, conversion_s=prepared.conversion_s + time.perf_counter() - start)


def batch_inputs(config: ModelConfig, inputs, batch_size: int) -> dict[str, np.ndarray]:
    return {spec.name: make_batch(x, spec, batch_size) for spec, x in zip(config.inputs, inputs)}


def varied_inputs(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Inputs unlike the timed ones: an engine that answers them with stale or constant outputs is caught.
    Floats are scaled and shifted; integers (token ids, indices) are rolled along their last axis, so they
    stay valid values for the model."""
    varied = {}
    for name, x in inputs.items():
        if np.issubdtype(x.dtype, np.floating):
            varied[name] = np.ascontiguousarray(x * 0.5 + 0.25, dtype=x.dtype)
        elif x.ndim and x.shape[-1] > 1 and x.dtype != np.bool_:
            varied[name] = np.ascontiguousarray(np.roll(x, 1, axis=-1))
        else:
            varied[name] = x
    return varied


def check_outputs(config: ModelConfig, outputs: dict[str, np.ndarray], batch_size: int) -> None:
    """The module's outputs must have the shapes the config declares (fixed dims, and the batch dim the batch):
    the engines size their buffers and name their outputs from it."""
    from framework.errors import ConfigError

    for index, spec in enumerate(config.outputs):
        shape, want = tuple(outputs[spec.name].shape), spec.runtime
        dynamic = config.output_dynamic_axes(spec)
        bad = len(shape) != len(want) or any(w != -1 and i not in dynamic and s != w for i, (s, w) in enumerate(zip(shape, want)))
        if not bad and "batch_size" in spec.dims_names:
            bad = shape[spec.dims_names.index("batch_size")] != batch_size
        if bad:
            raise ConfigError(config.path, f"outputs[{index}].shape.runtime",
                              f"the model returns {spec.name!r} with shape {shape} at batch size {batch_size}, "
                              f"the config says {list(want)}")  # fmt: skip
