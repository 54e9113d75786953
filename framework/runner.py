"""The core loop: model x example shape x engine x precision x batch size.

Per shape the model is exported to ONNX once and checked against PyTorch before anything is measured.
Each experiment is load -> warm-up (untimed) -> timed loop -> output check against the PyTorch fp32
reference, and always ends as a record on disk: ``ok``, ``failed`` (with the one-line reason),
``skipped`` (precision the engine cannot run) or ``unavailable`` (engine this machine cannot run).
A failing experiment never stops the sweep.
"""

from __future__ import annotations

import contextlib
import inspect
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from framework import environment
from framework.agreement import compare_outputs
from framework.artifact_cache import cached_build, file_sha256, settings_hash
from framework.engines import ENGINES, PRECISIONS, ModelArtifacts, engine_availability, engine_class
from framework.errors import DeployBenchError, EngineUnavailable, one_line
from framework.export import export_onnx, export_settings, model_digest, onnx_size_mb
from framework.isolation import run_in_child, start_fork_server, write_shape_data
from framework.accuracy import evaluate
from framework.loader import make_batch, take_samples
from framework.locking import results_lock, sigterm_as_interrupt
from framework.measure import Timing, time_cuda, time_host
from framework.monitor import DEFAULT_INTERVAL_S, ResourceSampler, process_gpu_memory_mb
from framework.precision import (
    INT8_VARIANTS,
    calibration_batches,
    calibration_digest,
    convert_to_fp16,
    fp16_settings,
    int8_settings,
    quantize_int8,
)
from framework.plots import plot_model
from framework.registry import RegisteredModel
from framework.report import write_report
from framework.results import (
    REPEATS_DIR,
    experiment_dir,
    is_complete,
    read_latencies_ms,
    safe_component,
    save_experiment,
    write_json,
    write_model_tables,
)
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
    isolate: bool = True  # each experiment in a fresh child process (False: in this process, for debugging)
    repeats: int = 1  # measure each experiment in this many processes, alternating engines
    timeout_s: float = 1800.0  # per experiment (per process) when isolated
    force: bool = False  # re-measure experiments an earlier run already finished
    accuracy_limit: int | None = None  # evaluate accuracy on at most this many dataset samples
    calibration_samples: int = 64  # int8 calibration: this many of the dataset's samples when the loader has no own set
    sample_interval_s: float = DEFAULT_INTERVAL_S  # resource sampler period during the timed loops; 0 turns it off

    def child_settings(self) -> dict:
        """What a child process needs to measure one experiment as this sweep would."""
        keys = ("iterations", "warmup", "min_duration", "warmup_duration", "engine_options", "accuracy_limit", "sample_interval_s")
        return {k: getattr(self, k) for k in keys}

    def fingerprint(self, context: "ShapeContext", batch_size: int) -> str:
        """Everything that changes an experiment's figures: a finished experiment is resumed only if it matches."""
        keys = ("iterations", "warmup", "min_duration", "warmup_duration", "exporter", "engine_options", "repeats", "accuracy_limit")
        return settings_hash({**{k: getattr(self, k) for k in keys}, "model": context.model_digest, "shapes": context.shapes,
                              "batch_size": batch_size})  # fmt: skip

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
        if self.repeats < 1 or (self.repeats > 1 and not self.isolate):
            raise DeployBenchError(f"--repeats {self.repeats}: needs a positive count, and separate processes (not --in-process)")
        if self.timeout_s <= 0:
            raise DeployBenchError(f"the per-experiment timeout must be positive, got {self.timeout_s}")
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
    model_digest: str | None = None  # weights and config: part of every cache key and result fingerprint
    conversion_s: float = 0.0  # this run's time producing (or verifying cached) ONNX graphs
    dataset: tuple[list[np.ndarray], np.ndarray] | None = None  # the loader's labelled data, for accuracy
    calibration: list[np.ndarray] | None = None  # int8 calibration samples
    dataset_reference: dict[str, np.ndarray] | None = None  # PyTorch fp32 outputs over the dataset
    loader_ref: dict | None = None  # how a child process finds the plugin class


def run_model(
    model: RegisteredModel,
    shapes_list: list[list[tuple[int, ...]] | None],
    settings: SweepSettings,
    report: Callable[[str], None] = print,
) -> list[dict]:
    """Run the whole matrix for one model; return every experiment record (also written to disk).

    Experiments an earlier run finished with the same settings are kept, not measured again (``force``
    re-measures). Interrupted (Ctrl-C, SIGTERM), the run keeps every finished experiment and rebuilds the
    tables from them before it stops.
    """
    settings.validate()
    engines = settings.chosen_engines()
    model_dir = settings.output / safe_component(model.name)
    try:
        model_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DeployBenchError(f"cannot create the results folder {model_dir}: {exc.strerror}") from None
    per_shape = len(engines) * len(settings.precisions) * len(settings.batch_sizes)
    progress = Progress(len(shapes_list) * per_shape, report)
    records: list[dict] = []
    with results_lock(model_dir), sigterm_as_interrupt():
        if settings.isolate:
            start_fork_server()  # imports torch & co. while this process exports
        try:
            write_json(model_dir / "environment.json", environment.collect())
            for shapes in shapes_list:
                context = _prepare_shape(model, shapes, engines, settings, model_dir, report)
                for batch_size in settings.batch_sizes:
                    records += _run_batch(context, engines, batch_size, settings, progress)
        finally:
            write_model_tables(model_dir)
    plots = plot_model(model_dir, keep_outliers=settings.keep_outliers)
    report(f"plots: {len(plots)} in {model_dir / 'plots'}")
    md, page = write_report(model_dir)
    report(f"results: {model_dir / 'summary.md'}; report: {md} and {page}")
    return records


@dataclass
class Progress:
    """One line per finished experiment: a bar, the count, the time left at the pace so far, the outcome."""

    total: int
    report: Callable[[str], None]
    done: int = 0
    started: float = field(default_factory=time.monotonic)

    def __call__(self, context: ShapeContext, engine: str, precision: str, batch_size: int, outcome: str, finished: bool = True) -> None:
        self.done += finished
        filled = round(20 * self.done / max(self.total, 1))
        elapsed = time.monotonic() - self.started
        eta = elapsed / self.done * (self.total - self.done) if self.done else float("nan")
        eta_text = f"ETA {int(eta // 60)}:{int(eta % 60):02d}" if eta == eta else "ETA ?"
        self.report(f"[{'#' * filled}{'.' * (20 - filled)}] {self.done}/{self.total} {eta_text} "
                    f"{context.model} {context.tag} {engine} {precision} bs{batch_size}: {outcome}")  # fmt: skip


def _run_batch(context: ShapeContext, engines: list[str], batch_size: int, settings: SweepSettings, progress: Progress) -> list[dict]:
    """Every engine x precision at one batch size. With ``repeats`` K, K rounds of one process per experiment,
    the order rotated each round, so slow drifts of the machine spread over every engine alike."""
    fingerprint = settings.fingerprint(context, batch_size)
    records, pending = [], []
    for engine_name in engines:
        for precision in settings.precisions:
            directory = experiment_dir(settings.output, context.model, context.tag, engine_name, precision, batch_size)
            kept = None if settings.force else is_complete(directory, fingerprint)
            if kept:
                records.append(kept)
                progress(context, engine_name, precision, batch_size, "kept from an earlier run (--force measures it again)")
                continue
            record = base_record(context, engine_name, precision, batch_size, settings)
            record["fingerprint"] = fingerprint
            if blocked_reason(context, engine_name, precision, record):
                save_experiment(directory, record)
                records.append(record)
                progress(context, engine_name, precision, batch_size, _outcome(record))
                continue
            pending.append((engine_name, precision, directory, record))
    if not pending:
        return records
    results: dict[Path, list[dict]] = {directory: [] for _, _, directory, _ in pending}
    for repeat in range(settings.repeats):
        shift = repeat % len(pending)
        for engine_name, precision, directory, base in pending[shift:] + pending[:shift]:
            target = directory if settings.repeats == 1 else directory / REPEATS_DIR / str(repeat)
            record = _measure(context, engine_name, precision, batch_size, settings, target, dict(base))
            results[directory].append({**record, "_dir": str(target)})
            if settings.repeats > 1:
                progress(context, engine_name, precision, batch_size, f"process {repeat + 1}/{settings.repeats}: {_outcome(record)}", False)
    for engine_name, precision, directory, _ in pending:
        record = results[directory][0] if settings.repeats == 1 else merge_repeats(results[directory], directory)
        record.pop("_dir", None)
        records.append(record)
        progress(context, engine_name, precision, batch_size, _outcome(record))
    return records


def _measure(context: ShapeContext, engine_name: str, precision: str, batch_size: int, settings: SweepSettings,
             directory: Path, record: dict) -> dict:  # fmt: skip
    """One measurement saved in ``directory``, in a child process unless ``settings.isolate`` is off."""
    if not settings.isolate:
        record = run_experiment(context, engine_name, precision, batch_size, settings, record)
        save_experiment(directory, record)
        return record
    data_file = context.artifacts.cache_dir / f"inputs_references_bs{batch_size}.npz"
    if (batch_size, "data_file") not in context.references:  # written once per run, for every child of this batch
        try:
            batch = _batch_inputs(context, batch_size)
            dataset_reference = _dataset_reference(context, settings.accuracy_limit) if context.dataset is not None else {}
            write_shape_data(data_file, context.inputs, _reference(context, batch_size, batch),
                             _reference(context, batch_size, varied_inputs(batch), varied=True), dataset_reference)  # fmt: skip
        except Exception as exc:  # e.g. a batch size the model cannot take: this experiment fails, the sweep goes on
            record.update(status="failed", reason=one_line(exc), traceback=traceback.format_exc(limit=8))
            save_experiment(directory, record)
            return record
        context.references[(batch_size, "data_file")] = {}
    job = {
        "model": context.model, "tag": context.tag, "shapes": [list(s) for s in context.shapes],
        "config_path": str(context.artifacts.config.path), "loader": context.loader_ref,
        "onnx_paths": {k: str(v) for k, v in context.artifacts.onnx_paths.items()}, "cache_dir": str(context.artifacts.cache_dir),
        "data_file": str(data_file), "engine": engine_name, "precision": precision, "batch_size": batch_size,
        "settings": settings.child_settings(), "record": record, "has_dataset": context.dataset is not None,
    }  # fmt: skip
    result, failure = run_in_child(job, directory, settings.timeout_s)
    if failure:  # the child died or timed out before saving a record
        record.update(status="failed", **failure)
        save_experiment(directory, record)
        return record
    return result


def merge_repeats(records: list[dict], directory: Path) -> dict:
    """One record from the K processes of a ``--repeats`` run: samples pooled, each process's median kept
    (``process_medians_ms``, what ``compare`` tests), invalid or failed if any process was."""
    failed = [r for r in records if r["status"] != "ok"]
    if failed:
        merged = {k: v for k, v in failed[0].items() if k != "_dir"}
        merged["reason"] = f"{len(failed)} of {len(records)} processes did not finish: {failed[0]['reason']}"
        save_experiment(directory, merged)
        return merged
    merged = {k: v for k, v in records[0].items() if k != "_dir"}
    samples, model_samples, processes = [], [], []
    for index, record in enumerate(records):
        latencies = read_latencies_ms(Path(record["_dir"]) / "latencies.csv")
        samples += [round(ms * 1e6) for ms in latencies]
        processes += [index] * len(latencies)
        if record.get("latency_model"):
            model_samples += [round(ms * 1e6) for ms in read_latencies_ms(Path(record["_dir"]) / "latencies.csv", "latency_model_ms")]
    batch_size = merged["batch_size"]
    elapsed = sum(round(r["latency"]["timed_region_s"] * 1e9) for r in records)
    merged["latency"] = latency_summary(Timing(tuple(samples), elapsed, merged["warmup"], merged["clock"]), batch_size)
    merged["process_medians_ms"] = [r["latency"]["median_ms"] for r in records]
    if model_samples:
        elapsed = sum(round(r["latency_model"]["timed_region_s"] * 1e9) for r in records)
        merged["latency_model"] = latency_summary(Timing(tuple(model_samples), elapsed, merged["warmup"], "cuda_events"), batch_size)
        merged["process_model_medians_ms"] = [r["latency_model"]["median_ms"] for r in records]
    for key in ("invalid_reasons", "warnings"):
        merged[key] = list(dict.fromkeys(item for r in records for item in r.get(key, [])))
    merged["validity"] = "invalid" if merged["invalid_reasons"] else "valid"
    merged["repeats"] = len(records)
    merged.update(latencies_ns=samples, latencies_model_ns=model_samples or None, latencies_process=processes)
    save_experiment(directory, merged)
    return merged


def _prepare_shape(model, shapes, engines, settings, model_dir, report) -> ShapeContext:
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
    elif cls.needs_onnx and not _onnx_at_precision(context, cls.graph_for(precision)):
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
        inputs = _batch_inputs(context, batch_size)
        reference = _reference(context, batch_size, inputs)
        engine = cls(context.artifacts, precision, settings.engine_options)
        # Memory before the engine loads: with it, the engine's own share of the peaks below (a child
        # shares the pages of the libraries its fork server imported, and RSS counts them).
        record["resources"] = {"rss_before_load_mb": _rss_mb()}
        if cls.device == "cuda":
            record["resources"]["cuda_context_mb"] = _cuda_context_mb()
        start = time.perf_counter()
        engine.load()
        record["build_s"] = time.perf_counter() - start
        record["model_size_mb"] = (
            onnx_size_mb(context.artifacts.onnx_for(cls.graph_for(precision))) if cls.needs_onnx else _module_size_mb(context.artifacts.get_module())
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
        record["agreement_after_timing"] = compare_outputs(_reference(context, batch_size, varied, varied=True), engine.infer(varied))
        if context.dataset is not None:
            accuracy, outputs = evaluate(engine.infer, context.artifacts.config, context.dataset, batch_size, settings.accuracy_limit)
            if accuracy is not None:
                record["accuracy"] = accuracy
            record["dataset_agreement"] = compare_outputs(_dataset_reference(context, settings.accuracy_limit), outputs)
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


def _batch_inputs(context: ShapeContext, batch_size: int) -> dict[str, np.ndarray]:
    return {spec.name: make_batch(x, spec, batch_size) for spec, x in zip(context.artifacts.config.inputs, context.inputs)}


def _reference(context: ShapeContext, batch_size: int, inputs: dict[str, np.ndarray], varied: bool = False) -> dict[str, np.ndarray]:
    """PyTorch fp32 on the CPU for this batch: the yardstick every engine is compared with. Computed once."""
    key = (batch_size, varied)
    if key not in context.references:
        from framework.torch_outputs import reference_outputs

        context.references[key] = reference_outputs(context.artifacts.get_module(), context.artifacts.config, inputs)
    return context.references[key]


def _dataset_reference(context: ShapeContext, limit: int | None) -> dict[str, np.ndarray]:
    """PyTorch fp32 outputs over the dataset (what every engine's dataset outputs are compared with). Once."""
    if context.dataset_reference is None:
        from framework.torch_outputs import reference_outputs

        config = context.artifacts.config
        context.dataset_reference = evaluate(lambda feed: reference_outputs(context.artifacts.get_module(), config, feed),
                                             config, context.dataset, 64, limit)[1]  # fmt: skip
    return context.dataset_reference


def _onnx_at_precision(context: ShapeContext, graph: str) -> bool:
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


def _rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


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
