"""One shape-mix experiment (an engine x precision x batch size over a shape distribution), run in one process
with the engine loaded once: every bucket timed alone, then the mixed stream unpadded and with the padding
the bucket latencies recommend, then (``shape_static``) a static engine per bucket where the engine has one.

Never raises: a failure is a ``ShapeMixResult`` with status failed, its reason and traceback.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from framework.config import ModelConfig, load_config
from framework.distribution import ShapeDistribution
from framework.engines import ModelArtifacts, engine_class
from framework.errors import DeployBenchError, one_line
from framework.loader import make_batch
from framework.measure.shape_mix import compiled_graphs, draw_buckets, mixed_stream, time_buckets
from framework.measure.stats import median_confidence_interval
from framework.results.profiles import padding_choices
from framework.results.shape_mix_record import BucketLatency, MixRun, ShapeMixResult
from framework.shapes import default_preprocessed_shape
from framework.sweep.job import LoaderRef

JOB_FILE = "shape_mix_job.json"


@dataclass(frozen=True)
class MixJob:
    model: str
    loader: LoaderRef
    config_path: Path
    graphs: dict  # graph name -> ONNX file
    cache_dir: Path
    engine: str
    precision: str
    batch_size: int
    options: dict
    distribution: ShapeDistribution
    run_length: dict  # per bucket: time_buckets' (and time_paired's) run length
    mix_iterations: int
    seed: int
    static: bool = True  # also measure a static engine per bucket where the engine has one

    def to_json(self) -> dict:
        data = asdict(self)
        data.update(distribution=self.distribution.to_json(), loader=asdict(self.loader))
        return json.loads(json.dumps(data, default=str))

    @classmethod
    def from_json(cls, data: dict) -> MixJob:
        return cls(**{**data, "loader": LoaderRef(**data["loader"]), "config_path": Path(data["config_path"]),
                      "graphs": {k: Path(v) for k, v in data["graphs"].items()}, "cache_dir": Path(data["cache_dir"]),
                      "distribution": ShapeDistribution.from_json(data["distribution"])})  # fmt: skip

    def empty_result(self) -> ShapeMixResult:
        return ShapeMixResult(self.model, self.engine, self.precision, self.batch_size, dict(self.options), self.distribution.dims)


def run_mix_job(job: MixJob) -> ShapeMixResult:
    """Measure ``job``; a failure comes back as a failed result, never as an exception."""
    try:
        return _study(job)
    except Exception as exc:
        return dataclasses.replace(job.empty_result(), status="failed", reason=one_line(exc), traceback=traceback.format_exc(limit=12))


def dynamic_options(cls, options: dict) -> dict:
    """The options of the engine measured across shapes: a compiled PyTorch module is compiled with
    ``dynamic=True`` unless the user chose ``compile_shapes`` (the static form is measured apart)."""
    if options.get("compile") and not options.get("compile_shapes") and "compile_shapes" in cls.options:
        return {**options, "compile_shapes": "dynamic"}
    return dict(options)


def shape_step_maker(engine):
    """The engine's step for a stream that alternates shapes: ``make_shape_step`` where the engine's plain steps
    share one binding (native TensorRT's execution context), else ``make_step`` (each step owns its buffers)."""
    return getattr(engine, "make_shape_step", engine.make_step)


def _study(job: MixJob) -> ShapeMixResult:
    from framework.sweep.shape_static import static_buckets

    config = load_config(job.config_path)
    dist = job.distribution
    cls = engine_class(job.engine)
    artifacts = ModelArtifacts(config=config, onnx_paths=dict(job.graphs), cache_dir=job.cache_dir, module_factory=_module_factory(job, config))
    inputs = {value: named(value, lambda v: bucket_inputs(job, config, v)) for value in dist.values}
    result = dataclasses.replace(job.empty_result(), options=dynamic_options(cls, job.options))
    with cls(artifacts, job.precision, result.options) as engine:
        compiled = compiled_graphs()  # before prepare: a dynamic engine compiles its one graph there
        engine.prepare(inputs[dist.values[0]])
        make_step = shape_step_maker(engine)
        steps = {value: named(value, lambda v: first_called(make_step(inputs[v]))) for value in dist.values}
        timings = time_buckets([steps[v] for v in dist.values], job.run_length)
        compiles = None if compiled is None or compiled_graphs() is None else compiled_graphs() - compiled
        buckets = tuple(_bucket(v, w, t) for v, w, t in zip(dist.values, dist.weights, timings))
        mixes = _mixes(job, config, engine, steps, [b.median_ms for b in buckets])
        settings = engine.describe()
        static, note = static_buckets(job, cls, artifacts, inputs, steps) if job.static else ((), "not asked for")
    return dataclasses.replace(result, buckets=buckets, mixes=mixes, static=tuple(static), static_note=note,
                               compiles_per_bucket=compiles, engine_settings=settings)  # fmt: skip


def named(value: tuple[int, ...], make):
    """``make(value)``; its failure names the bucket (a shape the model cannot run fails the experiment: say which)."""
    try:
        return make(value)
    except Exception as exc:
        raise DeployBenchError(f"bucket {list(value)}: {one_line(exc)}") from exc


def first_called(step):
    """``step``, called once: a bucket the engine cannot run fails here, where its name is known."""
    step()
    return step


def _bucket(value: tuple[int, ...], weight: float, timing) -> BucketLatency:
    ms = np.sort(np.asarray(timing.latencies_ns, dtype=float)) / 1e6
    ci = median_confidence_interval(ms)
    median = float(np.median(ms))
    switch = float(np.median(timing.switch_ns)) / 1e6 if timing.switch_ns else None
    return BucketLatency(tuple(value), weight, median, tuple(ci) if ci else (median, median), int(ms.size), timing.stop_rule, switch)


MIX_BLOCK = 50  # requests per block when the unpadded and padded streams are interleaved


def _mixes(job: MixJob, config: ModelConfig, engine, steps: dict, medians: list[float]) -> tuple[MixRun, ...]:
    """The mixed stream unpadded and, when the bucket medians recommend a padding (not "none"), padded: the same
    draws, interleaved in blocks of ``MIX_BLOCK`` requests (ABBA order), so a drifting machine weighs on both."""
    dist = job.distribution
    draws = draw_buckets(dist.weights, job.mix_iterations, job.seed)
    streams = {"unpadded": list(dist.values)}
    padded = next((p for p in padding_choices(dist.values, dist.weights, medians) if p.label != "none"), None)
    if padded is not None:
        for target in padded.targets:
            if target not in steps:  # a padded size that is not a bucket: its own inputs and step, warmed up
                steps[target] = shape_step_maker(engine)(bucket_inputs(job, config, target))
                for _ in range(3):
                    steps[target]()
        streams[padded.label] = list(padded.targets)
    latencies: dict[str, list[int]] = {label: [] for label in streams}
    recompiles: dict[str, int | None] = {label: 0 for label in streams}
    for block, start in enumerate(range(0, len(draws), MIX_BLOCK)):
        for label in list(streams)[:: 1 if block % 2 == 0 else -1]:
            before = compiled_graphs()
            latencies[label] += mixed_stream([steps[v] for v in streams[label]], draws[start : start + MIX_BLOCK])
            after = compiled_graphs()
            recompiles[label] = None if before is None or after is None or not job.options.get("compile") else recompiles[label] + after - before
    return tuple(MixRun(label, job.seed, tuple(int(d) for d in draws), tuple(tuple(v) for v in values),
                        tuple(x / 1e6 for x in latencies[label]), recompiles[label]) for label, values in streams.items())  # fmt: skip


def bucket_inputs(job: MixJob, config: ModelConfig, value: tuple[int, ...]) -> dict[str, np.ndarray]:
    """The model's inputs at bucket ``value``: the loader's own example inputs of that shape (its tokenizer, its
    data), preprocessed as in every run, then stacked to the batch size."""
    wanted = job.distribution.runtime_shapes(config, value, 1)
    examples = [example_for(spec, shape) for spec, shape in zip(config.inputs, wanted)]
    tensors = job.loader.load_class()(config, examples).runtime_inputs()
    for spec, tensor, shape in zip(config.inputs, tensors, wanted):
        if tuple(tensor.shape) != tuple(shape):
            raise DeployBenchError(f"bucket {list(value)}: the loader made input {spec.name!r} of shape {tuple(tensor.shape)} "
                                   f"from example shape {examples[config.inputs.index(spec)]}, expected {shape}")  # fmt: skip
    return {spec.name: make_batch(t, spec, job.batch_size) for spec, t in zip(config.inputs, tensors)}


def example_for(spec, runtime_shape: tuple[int, ...]) -> tuple[int, ...]:
    """The example shape (the loader's, before preprocessing) whose default preprocessing gives ``runtime_shape``
    (batch of one): the same shape when the example has the runtime's rank, else without the batch dim, HWC
    for an image."""
    if len(spec.example) == len(runtime_shape):
        return tuple(runtime_shape)
    axis = spec.batch_axis if spec.batch_axis is not None else 0
    plain = tuple(d for i, d in enumerate(runtime_shape) if i != axis)
    example_is_hwc = len(plain) == 3 and default_preprocessed_shape(spec.example, spec)[1:] != tuple(spec.example)
    if example_is_hwc:
        return (plain[1], plain[2], plain[0])  # CHW -> HWC, as the config's example: the preprocessing turns it back
    return plain


def _module_factory(job: MixJob, config: ModelConfig):
    def load(attention: str = ""):
        plugin = job.loader.load_class()(config, None)
        plugin.attention = attention or None
        return plugin.load_pytorch_module().eval()

    cached = {}
    return lambda attention="": cached[attention] if attention in cached else cached.setdefault(attention, load(attention))


def child_entry(job_path: str, result_dir: str) -> None:
    """In the forked child: its output goes to ``child.log``; the result to ``shape_mix.json``."""
    log = os.open(Path(result_dir) / "child.log", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    try:
        run_mix_job(MixJob.from_json(json.loads(Path(job_path).read_text()))).save(Path(result_dir))
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
