"""The core loop: model x example shape x engine x precision x batch size.

Per shape the model is exported to ONNX once and checked against PyTorch before anything is measured.
Each experiment is load -> warm-up (untimed) -> timed loop -> output check against the PyTorch fp32
reference, and always ends as a record on disk: ``ok``, ``failed`` (with the one-line reason),
``skipped`` (precision the engine cannot run) or ``unavailable`` (engine this machine cannot run).
A failing experiment never stops the sweep.
"""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from framework import environment
from framework.agreement import compare_outputs
from framework.engines import ENGINES, PRECISIONS, ModelArtifacts, engine_availability, engine_class
from framework.errors import DeployBenchError, EngineUnavailable, one_line
from framework.export import export_onnx, onnx_size_mb
from framework.loader import make_batch
from framework.measure import time_cuda, time_host
from framework.precision import convert_to_fp16
from framework.plots import plot_model
from framework.registry import RegisteredModel
from framework.results import experiment_dir, safe_component, write_json, write_latencies, write_model_tables
from framework.shapes import shape_tag
from framework.stats import latency_summary
from framework.validity import label


@dataclass
class SweepSettings:
    engines: list[str] | None = None  # None: every engine this machine can run
    precisions: list[str] = field(default_factory=lambda: ["fp32"])
    batch_sizes: list[int] = field(default_factory=lambda: [1])
    iterations: int = 100  # at least this many timed iterations ...
    warmup: int = 10
    min_duration: float = 1.0  # ... and at least this many seconds of timed region, whichever ends later
    warmup_duration: float = 0.0  # warm-up: at least `warmup` iterations and at least this many seconds
    output: Path = Path("measurements_results")
    exporter: str = "torchscript"
    keep_outliers: bool = False
    engine_options: dict[str, object] = field(default_factory=dict)  # --option NAME=VALUE, to engines that know NAME

    def chosen_engines(self) -> list[str]:
        if self.engines is None:
            return [name for name in ENGINES if engine_availability(name) is None]
        unknown = [e for e in self.engines if e not in ENGINES]
        if unknown:
            raise DeployBenchError(f"unknown engines {unknown}; known engines: {', '.join(ENGINES)}")
        return list(self.engines)

    def validate(self) -> None:
        bad = [p for p in self.precisions if p not in PRECISIONS]
        if bad:
            raise DeployBenchError(f"unknown precisions {bad}; allowed: {', '.join(PRECISIONS)}")
        if any(b < 1 for b in self.batch_sizes):
            raise DeployBenchError(f"batch sizes must be positive, got {self.batch_sizes}")
        if self.min_duration < 0 or self.warmup_duration < 0:
            raise DeployBenchError(f"durations must be >= 0, got {self.min_duration} and {self.warmup_duration}")
        if self.iterations < 1 or self.warmup < 0:
            raise DeployBenchError(f"need iterations >= 1 and warmup >= 0, got {self.iterations} and {self.warmup}")
        known = {name for engine in ENGINES for name in engine_class(engine).options}
        unknown = sorted(set(self.engine_options) - known)
        if unknown:
            raise DeployBenchError(f"unknown engine options {unknown}; known: {', '.join(sorted(known))}")


@dataclass
class ShapeContext:
    """What every experiment of one example shape shares."""

    model: str
    tag: str
    shapes: list[tuple[int, ...]]
    artifacts: ModelArtifacts | None = None
    inputs: list[np.ndarray] | None = None  # runtime tensors, batch of one
    parameters: int | None = None
    load_s: float | None = None  # cold start: loading the PyTorch module
    export: dict | None = None
    export_error: str | None = None
    precision_errors: dict[str, str] = field(default_factory=dict)
    setup_error: str | None = None
    references: dict[tuple[int, bool], dict] = field(default_factory=dict)  # (batch size, varied inputs) -> outputs


def run_model(
    model: RegisteredModel,
    shapes_list: list[list[tuple[int, ...]] | None],
    settings: SweepSettings,
    report: Callable[[str], None] = print,
) -> list[dict]:
    """Run the whole matrix for one model; return every experiment record (also written to disk)."""
    settings.validate()
    engines = settings.chosen_engines()
    model_dir = settings.output / safe_component(model.name)
    model_dir.mkdir(parents=True, exist_ok=True)
    write_json(model_dir / "environment.json", environment.collect())
    total = len(shapes_list) * len(engines) * len(settings.precisions) * len(settings.batch_sizes)
    records, done = [], 0
    for shapes in shapes_list:
        context = _prepare_shape(model, shapes, engines, settings, model_dir, report)
        for batch_size in settings.batch_sizes:
            for engine_name in engines:
                for precision in settings.precisions:
                    done += 1
                    record = run_experiment(context, engine_name, precision, batch_size, settings)
                    directory = experiment_dir(settings.output, model.name, context.tag, engine_name, precision, batch_size)
                    if "latencies_ns" in record:
                        write_latencies(directory / "latencies.csv", record.pop("latencies_ns"), record.pop("latencies_model_ns", None))
                    write_json(directory / "summary.json", record)
                    records.append(record)
                    report(f"[{done}/{total}] {model.name} {context.tag} {engine_name} {precision} bs{batch_size}: {_outcome(record)}")
    write_model_tables(model_dir)
    for path in plot_model(model_dir, keep_outliers=settings.keep_outliers):
        report(f"plot: {path}")
    report(f"results: {model_dir / 'summary.md'}")
    return records


def _prepare_shape(model, shapes, engines, settings, model_dir, report) -> ShapeContext:
    """Load the module and inputs, export and check ONNX once; failures are kept for every experiment."""
    loader = model.create(shapes)
    context = ShapeContext(model=model.name, tag=shape_tag(loader.example_shapes), shapes=list(loader.example_shapes))
    try:
        context.inputs = loader.runtime_inputs()
        start = time.perf_counter()
        module = loader.load_pytorch_module().eval()
        context.load_s = time.perf_counter() - start
        context.parameters = sum(p.numel() for p in module.parameters())
        cache_dir = model_dir / "cache" / safe_component(context.tag)
        context.artifacts = ModelArtifacts(config=loader.config, module=module, cache_dir=cache_dir)
    except Exception as exc:
        context.setup_error = one_line(exc)
        report(f"{model.name} {context.tag}: cannot prepare inputs or module: {context.setup_error}")
        return context
    if any(engine_class(e).needs_onnx for e in engines if engine_availability(e) is None):
        try:
            result = export_onnx(module, context.inputs, loader.config, cache_dir / "model.onnx", exporter=settings.exporter)
            context.artifacts.onnx_paths["fp32"] = result.path
            context.export = {
                "export_s": result.seconds,
                "onnx_nodes": result.node_count,
                "onnx_size_mb": result.size_mb,
                "exporter": result.exporter,
                "opset": result.opset,
                "export_max_abs_error": result.max_abs_error,
            }
            report(f"{model.name} {context.tag}: exported {result.path} in {result.seconds:.1f} s, "
                   f"{result.node_count} nodes, matches PyTorch (max abs error {result.max_abs_error:.2e})")  # fmt: skip
        except Exception as exc:
            context.export_error = one_line(exc)
            report(f"{model.name} {context.tag}: ONNX export failed: {context.export_error}")
    return context


def run_experiment(context: ShapeContext, engine_name: str, precision: str, batch_size: int, settings: SweepSettings) -> dict:
    """One experiment, start to finish. Never raises for the experiment's own failures: they become the record."""
    cls = engine_class(engine_name)
    record = {
        "model": context.model,
        "shape_tag": context.tag,
        "example_shapes": [list(s) for s in context.shapes],
        "engine": engine_name,
        "runtime": cls.runtime,
        "device": cls.device,
        "precision": precision,
        "batch_size": batch_size,
        "iterations": settings.iterations,
        "warmup": settings.warmup,
        "min_duration_s": settings.min_duration,
        "parameters": context.parameters,
        "load_s": context.load_s,
        **(context.export or {}),
    }

    def finish(status: str, reason: str = "") -> dict:
        record.update(status=status, reason=reason)
        return record

    unavailable = engine_availability(engine_name)
    if unavailable:
        return finish("unavailable", unavailable)
    if precision not in cls.precisions:
        return finish("skipped", f"{engine_name} does not run {precision} (it runs {', '.join(cls.precisions)})")
    if context.setup_error:
        return finish("failed", f"preparing the model failed: {context.setup_error}")
    if cls.needs_onnx and "fp32" not in context.artifacts.onnx_paths:
        return finish("failed", f"no ONNX file: {context.export_error}")
    if cls.needs_onnx and not _onnx_at_precision(context, precision):
        return finish("failed", f"no {precision} ONNX graph: {context.precision_errors[precision]}")
    engine = None
    try:
        inputs = {
            spec.name: make_batch(tensor, spec, batch_size) for spec, tensor in zip(context.artifacts.config.inputs, context.inputs)
        }
        reference = _reference(context, batch_size, inputs)
        engine = cls(context.artifacts, precision, settings.engine_options)
        start = time.perf_counter()
        engine.load()
        record["build_s"] = time.perf_counter() - start
        record["model_size_mb"] = (
            onnx_size_mb(context.artifacts.onnx_for(precision)) if cls.needs_onnx else _module_size_mb(context.artifacts.module)
        )
        start = time.perf_counter()
        first_outputs = engine.infer(inputs)
        record["first_inference_ms"] = (time.perf_counter() - start) * 1e3  # cold: includes lazy initialisation
        record["agreement"] = compare_outputs(reference, first_outputs)
        durations = {"min_duration_s": settings.min_duration, "warmup_duration_s": settings.warmup_duration}
        timing = time_host(engine.make_step(inputs), settings.iterations, settings.warmup, **durations)
        record["clock"] = timing.clock
        record["latency"] = latency_summary(timing, batch_size)
        record["latencies_ns"] = timing.latencies_ns
        device_step = engine.make_device_step(inputs)
        model_timing = None
        if device_step is not None:  # GPU engines: latency-model, device time of the compute alone
            step, stream = device_step
            model_timing = time_cuda(step, stream, settings.iterations, settings.warmup, **durations)
            record["latency_model"] = latency_summary(model_timing, batch_size)
            record["latencies_model_ns"] = model_timing.latencies_ns
        varied = varied_inputs(inputs)
        record["agreement_after_timing"] = compare_outputs(_reference(context, batch_size, varied, varied=True), engine.infer(varied))
        record["engine_settings"] = engine.describe()
        enqueue = model_timing.enqueue_ns if model_timing and cls.device_step_returns_early else None
        label(record, settings.iterations, settings.min_duration, enqueue)
    except EngineUnavailable as exc:  # e.g. ONNX Runtime fell back to CPU: not a measurement of this engine
        return finish("unavailable", one_line(exc))
    except Exception as exc:
        record["traceback"] = traceback.format_exc(limit=8)
        return finish("failed", one_line(exc))
    finally:
        if engine is not None:
            engine.close()
    if record["agreement"]["worst"]["has_nan_or_inf"]:
        return finish("failed", "outputs contain NaN or Inf")
    return finish("ok")


def varied_inputs(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Inputs unlike the timed ones: an engine that answers them with stale or constant outputs is caught.

    Floats are scaled and shifted; integers (token ids, indices) are rolled along their last axis, so they
    stay valid values for the model.
    """
    varied = {}
    for name, x in inputs.items():
        if np.issubdtype(x.dtype, np.floating):
            varied[name] = np.ascontiguousarray(x * 0.5 + 0.25, dtype=x.dtype)
        elif x.ndim and x.shape[-1] > 1 and x.dtype != np.bool_:
            varied[name] = np.ascontiguousarray(np.roll(x, 1, axis=-1))
        else:
            varied[name] = x
    return varied


def _reference(context: ShapeContext, batch_size: int, inputs: dict[str, np.ndarray], varied: bool = False) -> dict[str, np.ndarray]:
    """PyTorch fp32 on the CPU for this batch: the yardstick every engine is compared with. Computed once."""
    key = (batch_size, varied)
    if key not in context.references:
        import torch

        from framework.torch_outputs import named_outputs

        module = context.artifacts.module
        with torch.inference_mode():
            result = module(*(torch.from_numpy(inputs[n]) for n in context.artifacts.config.input_names))
        context.references[key] = named_outputs(result, context.artifacts.config.output_names)
    return context.references[key]


def _onnx_at_precision(context: ShapeContext, precision: str) -> bool:
    """Make the ONNX graph of ``precision`` from the fp32 export, once per shape; False (reason kept) if it fails."""
    paths = context.artifacts.onnx_paths
    if precision in paths:
        return True
    if precision not in context.precision_errors:
        target = context.artifacts.cache_dir / f"model_{precision}.onnx"
        try:
            if precision != "fp16":
                raise DeployBenchError(f"{precision} ONNX graphs are not produced yet (only fp32 and fp16)")
            convert_to_fp16(paths["fp32"], target)
            paths[precision] = target
            return True
        except Exception as exc:
            context.precision_errors[precision] = one_line(exc)
    return False


def _module_size_mb(module) -> float:
    tensors = list(module.parameters()) + list(module.buffers())
    return sum(t.numel() * t.element_size() for t in tensors) / 1e6


def _outcome(record: dict) -> str:
    if record["status"] != "ok":
        return f"{record['status'].upper()}: {record['reason']}"
    latency, model = record["latency"], record.get("latency_model")
    text = f"median {latency['median_ms']:.3f} ms (n={latency['n']}, CV {latency['cv']:.1%}), {latency['throughput_items_per_s']:.1f} items/s"
    if model:
        text += f"; model-only median {model['median_ms']:.3f} ms, {model['throughput_items_per_s']:.1f} items/s"
    text += f", max abs error {record['agreement']['worst']['max_abs_error']:.2e}"
    if record["validity"] == "invalid":
        text += f"; INVALID: {'; '.join(record['invalid_reasons'])}"
    return text + "".join(f"; warning: {w}" for w in record["warnings"])
