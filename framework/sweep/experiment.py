"""One experiment, start to finish, and what the experiments of one example shape share.

Per shape the model is exported to ONNX once (or taken from the artifact cache) and checked against
PyTorch before anything is measured; fp16 and int8 graphs are made from it on first need. An experiment is
load -> warm-up (untimed) -> timed loops (with the resource sampler) -> output checks against the PyTorch
fp32 reference (before and after timing) -> accuracy on the dataset, and always ends as a record:
``ok``, ``failed`` (with the one-line reason), ``skipped`` (a precision the engine cannot run) or
``unavailable`` (an engine this machine cannot run). It never raises for its own failures.
"""

from __future__ import annotations

import contextlib
import inspect
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from framework.measure.accuracy import evaluate
from framework.measure.agreement import compare_outputs
from framework.artifacts.cache import cached_build, file_sha256
from framework.engines import ModelArtifacts, engine_availability, engine_class
from framework.errors import DeployBenchError, EngineUnavailable, one_line
from framework.artifacts.export import export_onnx, export_settings, model_digest, onnx_size_mb
from framework.loader import make_batch, take_samples
from framework.measure.timing import time_cuda, time_host
from framework.measure.monitor import ResourceSampler, process_gpu_memory_mb, process_rss_mb
from framework.artifacts.graphs import (
    INT8_VARIANTS,
    calibration_batches,
    calibration_digest,
    convert_to_fp16,
    fp16_settings,
    int8_settings,
    quantize_int8,
)
from framework.results.store import safe_component
from framework.settings import SweepSettings
from framework.shapes import shape_tag
from framework.measure.stats import latency_summary
from framework.measure.validity import label


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
    shared_data: dict[int, Path] = field(default_factory=dict)  # batch size -> the npz its child processes read
    model_digest: str | None = None  # weights and config: part of every cache key and result fingerprint
    data_digest: str | None = None  # dataset and calibration samples: part of the result fingerprint
    conversion_s: float = 0.0  # this run's time producing (or verifying cached) ONNX graphs
    dataset: tuple[list[np.ndarray], np.ndarray] | None = None  # the loader's labelled data, for accuracy
    calibration: list[np.ndarray] | None = None  # int8 calibration samples
    dataset_reference: dict[str, np.ndarray] | None = None  # PyTorch fp32 outputs over the dataset
    loader_ref: dict | None = None  # how a child process finds the plugin class


def prepare_shape(model, shapes, engines, settings, model_dir, report) -> ShapeContext:
    """Load the module and inputs, export and check ONNX once (or reuse the cached export); failures are
    kept for every experiment."""
    loader = model.create(shapes)
    context = ShapeContext(model=model.name, tag=shape_tag(loader.example_shapes), shapes=list(loader.example_shapes))
    cls = model.loader_class
    context.loader_ref = {"module": cls.__module__, "file": inspect.getfile(cls), "class": cls.__qualname__}
    try:
        context.inputs = loader.runtime_inputs()
        start = time.perf_counter()
        module = loader.load_pytorch_module().eval()
        context.load_s = time.perf_counter() - start
        context.parameters = sum(p.numel() for p in module.parameters())
        context.model_digest = model_digest(module, loader.config)
        context.dataset = loader.load_dataset()
        context.calibration = _calibration_samples(loader, context, settings.calibration_samples)
        context.data_digest = _data_digest(context)
        cache_dir = model_dir / "cache" / safe_component(context.tag)
        context.artifacts = ModelArtifacts(config=loader.config, module=module, cache_dir=cache_dir)
    except Exception as exc:
        context.setup_error = one_line(exc)
        report(f"{model.name} {context.tag}: cannot prepare inputs or module: {context.setup_error}")
        return context
    if any(engine_class(e).needs_onnx for e in engines if engine_availability(e) is None):
        path = cache_dir / "model.onnx"
        key = export_settings(context.model_digest, context.inputs, settings.exporter)

        def build(target: Path) -> dict:
            result = export_onnx(module, context.inputs, loader.config, target, exporter=settings.exporter)
            return {"export_s": result.seconds, "onnx_nodes": result.node_count, "onnx_size_mb": result.size_mb,
                    "exporter": result.exporter, "opset": result.opset, "export_max_abs_error": result.max_abs_error}  # fmt: skip

        start = time.perf_counter()
        try:
            context.export, reused, why = cached_build(path, key, build)
            context.export = {**context.export, "export_from_cache": reused}
            context.artifacts.onnx_paths["fp32"] = path
            if reused:
                report(f"{model.name} {context.tag}: ONNX {why}: {path}")
            else:
                if why != "not cached":
                    report(f"{model.name} {context.tag}: ONNX export {why}")
                report(f"{model.name} {context.tag}: exported {path} in {context.export['export_s']:.1f} s, "
                       f"{context.export['onnx_nodes']} nodes, matches PyTorch (max abs error {context.export['export_max_abs_error']:.2e})")  # fmt: skip
        except Exception as exc:
            context.export_error = one_line(exc)
            report(f"{model.name} {context.tag}: ONNX export failed: {context.export_error}")
        context.conversion_s += time.perf_counter() - start
    return context


def _calibration_samples(loader, context: ShapeContext, limit: int) -> list[np.ndarray]:
    """The loader's own calibration set, else the dataset's first ``limit`` samples, else the example inputs."""
    samples = loader.load_calibration_data()
    if samples is None and context.dataset is not None:
        samples = [take_samples(x, spec, 0, min(limit, x.shape[spec.batch_axis or 0])) for spec, x in zip(loader.config.inputs, context.dataset[0])]
    return samples if samples is not None else context.inputs


def _data_digest(context: ShapeContext) -> str:
    """Changed labels, dataset or calibration samples make earlier accuracy and int8 results stale."""
    arrays = list(context.calibration or [])
    if context.dataset is not None:
        arrays += list(context.dataset[0]) + ([np.asarray(context.dataset[1])] if context.dataset[1] is not None else [])
    return calibration_digest([{str(i): a for i, a in enumerate(arrays)}])


def base_record(context: ShapeContext, engine_name: str, precision: str, batch_size: int, settings: SweepSettings) -> dict:
    """What an experiment's record says before anything is measured."""
    cls = engine_class(engine_name)
    return {
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
        "isolated": settings.isolate,
        "parameters": context.parameters,
        "load_s": context.load_s,
        **(context.export or {}),
    }


def blocked_reason(context: ShapeContext, engine_name: str, precision: str, record: dict) -> bool:
    """Settle, without measuring, an experiment that cannot run: sets status and reason, returns True."""
    cls = engine_class(engine_name)
    unavailable = engine_availability(engine_name)
    if unavailable:
        status, reason = "unavailable", unavailable
    elif precision not in cls.precisions:
        status, reason = "skipped", f"{engine_name} does not run {precision} (it runs {', '.join(cls.precisions)})"
    elif context.setup_error:
        status, reason = "failed", f"preparing the model failed: {context.setup_error}"
    elif cls.needs_onnx and "fp32" not in context.artifacts.onnx_paths:
        status, reason = "failed", f"no ONNX file: {context.export_error}"
    elif cls.needs_onnx and not onnx_at_precision(context, cls.graph_for(precision)):
        status, reason = "failed", f"no {precision} ONNX graph: {context.precision_errors[cls.graph_for(precision)]}"
    else:
        return False
    record.update(status=status, reason=reason)
    return True


def run_experiment(context: ShapeContext, engine_name: str, precision: str, batch_size: int, settings: SweepSettings,
                   record: dict | None = None) -> dict:  # fmt: skip
    """One experiment, start to finish. Never raises for the experiment's own failures: they become the record."""
    cls = engine_class(engine_name)
    record = record if record is not None else base_record(context, engine_name, precision, batch_size, settings)

    def finish(status: str, reason: str = "") -> dict:
        record.update(status=status, reason=reason)
        return record

    if blocked_reason(context, engine_name, precision, record):
        return record
    engine = None
    try:
        inputs = batch_inputs(context, batch_size)
        reference = pytorch_reference(context, batch_size, inputs)
        engine = cls(context.artifacts, precision, settings.engine_options)
        # Memory before the engine loads: with it, the engine's own share of the peaks below (a child
        # shares the pages of the libraries its fork server imported, and RSS counts them).
        record["resources"] = {"rss_before_load_mb": process_rss_mb()}
        if cls.device == "cuda":
            record["resources"]["cuda_context_mb"] = _cuda_context_mb()
        start = time.perf_counter()
        engine.load()
        record["build_s"] = time.perf_counter() - start
        module = getattr(engine, "module", None)  # the PyTorch engine's own copy: fp16 weighs half
        record["model_size_mb"] = (
            onnx_size_mb(context.artifacts.onnx_for(cls.graph_for(precision))) if cls.needs_onnx
            else _module_size_mb(module if module is not None else context.artifacts.get_module())
        )
        start = time.perf_counter()
        first_outputs = engine.infer(inputs)
        record["first_inference_ms"] = (time.perf_counter() - start) * 1e3  # cold: includes lazy initialisation
        record["agreement"] = compare_outputs(reference, first_outputs)
        durations = {"min_duration_s": settings.min_duration, "warmup_duration_s": settings.warmup_duration}
        sampler = ResourceSampler(settings.sample_interval_s, gpu=cls.device == "cuda") if settings.sample_interval_s > 0 else None
        with sampler or contextlib.nullcontext():
            timing = time_host(engine.make_step(inputs), settings.iterations, settings.warmup, **durations)
            device_step = engine.make_device_step(inputs)
            model_timing = None
            if device_step is not None:  # GPU engines: latency-model, device time of the compute alone
                step, stream = device_step
                model_timing = time_cuda(step, stream, settings.iterations, settings.warmup, **durations)
        record["clock"] = timing.clock
        record["latency"] = latency_summary(timing, batch_size)
        record["latencies_ns"] = timing.latencies_ns
        if model_timing is not None:
            record["latency_model"] = latency_summary(model_timing, batch_size)
            record["latencies_model_ns"] = model_timing.latencies_ns
        if sampler is not None:
            record["resources"] = {**record.get("resources", {}), **sampler.summary()}
            record["resources_timeline"] = sampler.to_csv(timing.started_ns)
        if cls.device == "cuda":
            record.setdefault("resources", {})["torch_max_allocated_mb"] = _torch_max_allocated_mb()
        varied = varied_inputs(inputs)
        record["agreement_after_timing"] = compare_outputs(pytorch_reference(context, batch_size, varied, varied=True), engine.infer(varied))
        if context.dataset is not None:
            accuracy, outputs = evaluate(engine.infer, context.artifacts.config, context.dataset, batch_size, settings.accuracy_limit)
            if accuracy is not None:
                record["accuracy"] = accuracy
            record["dataset_agreement"] = compare_outputs(pytorch_dataset_reference(context, settings.accuracy_limit), outputs)
        record["engine_settings"] = engine.describe()
        enqueue = model_timing.enqueue_ns if model_timing and cls.device_step_returns_early else None
        label(record, settings.iterations, settings.min_duration, enqueue)
        record["warnings"] += (record.get("resources") or {}).get("warnings", [])
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


def batch_inputs(context: ShapeContext, batch_size: int) -> dict[str, np.ndarray]:
    return {spec.name: make_batch(x, spec, batch_size) for spec, x in zip(context.artifacts.config.inputs, context.inputs)}


def pytorch_reference(context: ShapeContext, batch_size: int, inputs: dict[str, np.ndarray], varied: bool = False) -> dict[str, np.ndarray]:
    """PyTorch fp32 on the CPU for this batch: the yardstick every engine is compared with. Computed once."""
    key = (batch_size, varied)
    if key not in context.references:
        from framework.torch_outputs import reference_outputs

        context.references[key] = reference_outputs(context.artifacts.get_module(), context.artifacts.config, inputs)
    return context.references[key]


def pytorch_dataset_reference(context: ShapeContext, limit: int | None) -> dict[str, np.ndarray]:
    """PyTorch fp32 outputs over the dataset (what every engine's dataset outputs are compared with). Once."""
    if context.dataset_reference is None:
        from framework.torch_outputs import reference_outputs

        config = context.artifacts.config
        context.dataset_reference = evaluate(lambda feed: reference_outputs(context.artifacts.get_module(), config, feed),
                                             config, context.dataset, 64, limit)[1]  # fmt: skip
    return context.dataset_reference


def onnx_at_precision(context: ShapeContext, graph: str) -> bool:
    """Make the ONNX graph ``graph`` (fp16, int8, int8_symmetric) from the fp32 export, once per shape, or
    reuse the cached one; False (reason kept) if it fails."""
    paths = context.artifacts.onnx_paths
    if graph in paths:
        return True
    if graph not in context.precision_errors:
        source, target = paths["fp32"], context.artifacts.cache_dir / f"model_{graph}.onnx"
        start = time.perf_counter()
        try:
            if graph == "fp16":
                cached_build(target, fp16_settings(file_sha256(source)), lambda path: {"convert_s": convert_to_fp16(source, path)})
            elif graph in INT8_VARIANTS:
                specs = context.artifacts.config.inputs
                batches = calibration_batches(context.calibration, specs, INT8_VARIANTS[graph]["calibration_batch"])
                key = int8_settings(file_sha256(source), calibration_digest(batches), graph)
                cached_build(target, key, lambda path: {"quantize_s": quantize_int8(source, path, batches, graph)})
            else:
                raise DeployBenchError(f"no recipe for a {graph} ONNX graph")
            paths[graph] = target
            return True
        except Exception as exc:
            context.precision_errors[graph] = one_line(exc)
        finally:
            context.conversion_s += time.perf_counter() - start
    return False


def _cuda_context_mb() -> float | None:
    """Device memory of this process right after CUDA starts, before the engine loads: the context's own
    cost, reported apart so engines compare on what they add."""
    import torch

    torch.zeros(1, device="cuda")
    torch.cuda.synchronize()
    return process_gpu_memory_mb(torch.cuda.current_device())


def _torch_max_allocated_mb() -> float:
    import torch

    return torch.cuda.max_memory_allocated() / 2**20


def _module_size_mb(module) -> float:
    tensors = list(module.parameters()) + list(module.buffers())
    return sum(t.numel() * t.element_size() for t in tensors) / 1e6
