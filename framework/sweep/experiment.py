"""One experiment, start to finish: ``run(job) -> Result``, the same in a child process and in-process.

load the engine (build time, size) -> compile (torch.compile's first call, timed apart as compile_s) ->
first inference, checked against PyTorch fp32 -> timed loops with the
resource sampler (warm-up untimed; GPU engines also on device time) -> outputs for other inputs checked
after timing (stale or constant outputs) -> accuracy on the dataset -> the verdict. It never raises for the
experiment's own failures: they end the result as ``failed`` (with the traceback) or ``unavailable``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
import traceback
from dataclasses import dataclass

import numpy as np

from framework.artifacts.export import onnx_size_mb
from framework.config import ModelConfig, load_config
from framework.engines import ModelArtifacts, engine_class
from framework.errors import EngineUnavailable, one_line
from framework.measure.accuracy import evaluate
from framework.measure.agreement import agreement, output_changes
from framework.measure.monitor import ResourceSampler, cuda_context_mb, process_rss_mb, torch_max_allocated_mb
from framework.measure.stats import latency_summary
from framework.measure.timing import Timing, time_cuda, time_host
from framework.measure.validity import judge
from framework.results.record import Accuracy, Resources, Result, Samples
from framework.sweep.job import Job, ShapeData, load_dataset, module_factory
from framework.sweep.prepare import batch_inputs, varied_inputs


@dataclass(frozen=True)
class JobContext:
    """What ``run`` reads from the job's files."""

    config: ModelConfig
    artifacts: ModelArtifacts
    inputs: dict[str, np.ndarray]  # the timed batch
    data: ShapeData
    dataset: tuple | None

    @classmethod
    def load(cls, job: Job) -> JobContext:
        config = load_config(job.config_path)
        data = ShapeData.read(job.data_file, config, job.has_dataset)
        artifacts = ModelArtifacts(config=config, onnx_paths=dict(job.graphs), cache_dir=job.cache_dir, module_factory=module_factory(job))
        return cls(config, artifacts, batch_inputs(config, data.inputs, job.experiment.batch_size), data, load_dataset(job, config))


def run(job: Job) -> Result:
    """Measure the job's experiment. Never raises for its own failures: they become the result."""
    stages = Stages()
    result = _run(job, stages)
    return dataclasses.replace(result, stages_s={**result.stages_s, **stages.seconds})


class Stages:
    """Seconds each stage of ``run`` took (``Result.stages_s``): where an experiment's process spends its time,
    which is what a sweep's wall time is made of besides the timed loops."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.seconds[name] = round(now - self._last, 4)
        self._last = now


def _run(job: Job, stages: Stages) -> Result:
    result, engine = job.pending_result(), None
    cls = engine_class(job.experiment.engine)
    try:
        context = JobContext.load(job)
        engine = cls(context.artifacts, job.experiment.precision, job.measure.engine_options)
        stages.lap("read")
        result = _load(engine, cls, context, result)
        stages.lap("load")
        result = dataclasses.replace(result, compile_s=engine.prepare(context.inputs))  # compiling: in no latency
        stages.lap("compile")
        result, first_outputs = _first_inference(engine, context, result)
        stages.lap("first_call")
        result, enqueue_ns = _timed(engine, cls, context, job, result)
        stages.lap("timed")
        result = _after_timing(engine, context, job, result, first_outputs)
        result = result.judged(judge(result, job.measure.required_iterations, job.measure.min_duration, enqueue_ns))
        stages.lap("checks")
    except EngineUnavailable as exc:  # e.g. ONNX Runtime fell back to CPU: not a measurement of this engine
        return result.ended("unavailable", one_line(exc))
    except Exception as exc:
        return result.ended("failed", one_line(exc), traceback=traceback.format_exc(limit=8))
    finally:
        if engine is not None:
            engine.close()
            stages.lap("close")
    if result.agreement.worst.has_nan_or_inf:
        return result.ended("failed", "outputs contain NaN or Inf")
    return result.ended("ok")


def _load(engine, cls, context: JobContext, result: Result) -> Result:
    """Build the engine; the memory before it loads makes the peaks below the engine's own share (a child
    shares the pages of the libraries its fork server imported, and RSS counts them)."""
    resources = Resources(rss_before_load_mb=process_rss_mb(), cuda_context_mb=cuda_context_mb() if cls.device == "cuda" else None)
    start = time.perf_counter()
    engine.load()
    build_s = time.perf_counter() - start
    if cls.needs_onnx:
        size = onnx_size_mb(context.artifacts.onnx_for(cls.graph_for(engine.precision)))
    else:  # the PyTorch engine's own copy: fp16 weighs half
        module = getattr(engine, "module", None)
        size = _module_size_mb(module if module is not None else context.artifacts.get_module())
    return dataclasses.replace(result, resources=resources, build_s=build_s, model_size_mb=size)


def _first_inference(engine, context: JobContext, result: Result) -> tuple[Result, dict[str, np.ndarray]]:
    """The first call, timed cold and checked; its outputs are kept for the stale check after timing."""
    start = time.perf_counter()
    outputs = engine.infer(context.inputs)
    first_ms = (time.perf_counter() - start) * 1e3  # cold: includes lazy initialisation
    outputs = {name: np.array(x, copy=True) for name, x in outputs.items()}  # an engine may reuse its output buffers
    checked = agreement(context.data.reference, outputs, result.experiment.precision)
    return dataclasses.replace(result, first_inference_ms=first_ms, agreement=checked), outputs


def _timed(engine, cls, context: JobContext, job: Job, result: Result) -> tuple[Result, tuple | None]:
    """Latency-all on the host clock; for GPU engines also latency-model (device time, CUDA events); each loop
    with its own run length (adaptive by default: until the median is known to ±target, ``measure.convergence``)."""
    m = job.measure
    durations = m.timing_options()
    sampler = ResourceSampler(m.sample_interval_s, gpu=cls.device == "cuda") if m.sample_interval_s > 0 else None
    model_timing: Timing | None = None
    with sampler or contextlib.nullcontext():
        timing = time_host(engine.make_step(context.inputs), m.iterations, m.warmup, **durations)
        device_step = engine.make_device_step(context.inputs)
        if device_step is not None:
            step, stream = device_step
            model_timing = time_cuda(step, stream, m.iterations, m.warmup, **durations)
    batch = job.experiment.batch_size
    resources = result.resources
    if sampler is not None:
        resources = Resources.from_dict({**resources.to_dict(), **sampler.summary()})
    if cls.device == "cuda":
        resources = dataclasses.replace(resources, torch_max_allocated_mb=torch_max_allocated_mb())
    result = dataclasses.replace(
        result, clock=timing.clock, target_ci=m.target_ci, latency=latency_summary(timing, batch), resources=resources,
        latency_model=latency_summary(model_timing, batch) if model_timing else None,
        samples=Samples(timing.latencies_ns, model_timing.latencies_ns if model_timing else None),
        timeline_csv=sampler.to_csv(timing.started_ns) if sampler is not None else None,
    )  # fmt: skip
    enqueue = model_timing.enqueue_ns if model_timing and cls.device_step_returns_early else None
    return result, enqueue


def _after_timing(engine, context: JobContext, job: Job, result: Result, first_outputs: dict[str, np.ndarray]) -> Result:
    """Other inputs after the timed run (stale outputs show: the engine's answer to them against its first
    answer, PyTorch's against PyTorch's), then accuracy and agreement over the dataset."""
    data, precision = context.data, job.experiment.precision
    outputs = engine.infer(varied_inputs(context.inputs))
    changes = output_changes(first_outputs, outputs, data.reference, data.varied_reference)
    result = dataclasses.replace(result, agreement_after_timing=agreement(data.varied_reference, outputs, precision, changes),
                                 engine_settings=engine.describe())  # fmt: skip
    if context.dataset is None:
        return result
    scores, outputs = evaluate(engine.infer, context.config, context.dataset, job.experiment.batch_size, job.measure.accuracy_limit)
    return dataclasses.replace(result, accuracy=Accuracy.from_dict(scores),
                               dataset_agreement=agreement(data.dataset_reference, outputs, precision))  # fmt: skip


def _module_size_mb(module) -> float:
    tensors = list(module.parameters()) + list(module.buffers())
    return sum(t.numel() * t.element_size() for t in tensors) / 1e6
