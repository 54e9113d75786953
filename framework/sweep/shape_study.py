"""``deploybench run MODEL --shape-mix``: every engine measured across a shape distribution instead of at one
example shape.

The distribution is ``--shape-distribution FILE`` or the config's ``distribution`` (``framework.distribution``).
The model is prepared once (load, ONNX export with its dynamic dims, fp16/int8 graphs) as in a sweep; then
each engine x precision x batch size is one experiment in a child process of its own (``shape_mix_job``), its
``shape_mix.json`` under ``<output>/<model>/shape_mix/<engine>__<precision>__bs<batch>/``. A failed experiment
is recorded with its reason and the study goes on. At the end the tables, recommendations and the figure
(``report.shape_section``) are written from every ``shape_mix.json`` on disk.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path

from framework.distribution import ShapeDistribution, check_profile, config_distribution, file_distribution
from framework.engines import engine_availability, engine_class
from framework.errors import DeployBenchError
from framework.files import safe_component, write_atomic
from framework.locking import results_lock, sigterm_as_interrupt
from framework.registry import RegisteredModel
from framework.results.shape_mix_record import FILE, ShapeMixResult
from framework.settings import SweepSettings
from framework.shapes import shape_tag
from framework.sweep import plan
from framework.sweep.job import LoaderRef
from framework.sweep.shape_mix_job import JOB_FILE, MixJob, child_entry, run_mix_job
from framework.sweep.shape_task import ShapeTask, prepare, prepare_in_child
from framework.sweep.tune import SHORT, SHORT_WARMUP, label

FOLDER = "shape_mix"
DEFAULT_MIX_ITERATIONS = 1000  # enough for p99 (deploybench shows p99 from 459 samples)
DEFAULT_SEED = 0


@dataclasses.dataclass(frozen=True)
class MixSettings:
    distribution_file: Path | None = None  # None: the config's distribution
    mix_iterations: int = DEFAULT_MIX_ITERATIONS
    seed: int = DEFAULT_SEED
    static: bool = True


def load_distribution(model: RegisteredModel, distribution_file: Path | None) -> ShapeDistribution:
    config = model.load_config()
    if distribution_file is not None:
        return file_distribution(distribution_file, config)
    found = config_distribution(config)
    if found is None:
        raise DeployBenchError(f"--shape-mix: {config.path} has no 'distribution' and no --shape-distribution FILE was given "
                               "(README: Shapes as served)")  # fmt: skip
    return found


def run_shape_mix(model: RegisteredModel, settings: SweepSettings, mix: MixSettings, report: Callable[[str], None] = print) -> list[ShapeMixResult]:
    """Measure every engine x precision x batch size across the distribution; write tables, figure, report."""
    from framework.report.document import markdown_to_html, write_report
    from framework.report.shape_section import write_shape_report
    from framework.results.store import load_results
    from framework.sweep.isolation import start_fork_server

    settings.validate()
    if mix.mix_iterations < 1:
        raise DeployBenchError(f"--mix-iterations must be at least 1, got {mix.mix_iterations}")
    if mix.seed < 0:  # numpy's generator refuses it, and only in the experiment, after the model is prepared
        raise DeployBenchError(f"--mix-seed must be a whole number >= 0, got {mix.seed}")
    distribution = load_distribution(model, mix.distribution_file)
    engines = [e for e in settings.chosen_engines() if _runnable(e, report)]
    planned = _plan(settings.chosen_engines(), engines, settings.precisions, report)
    config = model.load_config()
    for batch_size in settings.batch_sizes:
        check_profile(distribution, config, engines, batch_size)
    model_dir = settings.output / safe_component(model.name)
    model_dir.mkdir(parents=True, exist_ok=True)
    results = []
    with results_lock(model_dir), sigterm_as_interrupt():
        if settings.isolate:
            start_fork_server()
        graphs, cache_dir = _prepare(model, engines, settings, model_dir, report)
        for engine, precision in planned:
            for batch_size in settings.batch_sizes:
                job = _job(model, engine, precision, batch_size, settings, mix, distribution, graphs, cache_dir)
                result = _run(job, settings, model_dir / FOLDER / experiment_folder(job))
                report(f"{result.label} bs{batch_size}: {_outcome(result)}")
                results.append(result)
    figure, markdown, text = write_shape_report(model_dir)
    written = [p for p in (figure, markdown) if p]
    if text:  # a self-contained HTML of the section, images inlined
        html = model_dir / FOLDER / "report.html"
        write_atomic(
            html,
            markdown_to_html(f"# deploybench, shapes as served: {model.name}\n\n{text}", model_dir / FOLDER, f"deploybench shapes: {model.name}"),
        )
        written.append(html)
    if load_results(model_dir):  # the model's report.md includes the section too
        written += list(write_report(model_dir))
    report(f"shape mix: {', '.join(str(p) for p in written)}")
    return results


def experiment_folder(job: MixJob) -> str:
    """``<engine>__<precision>__bs<batch>``, and the options that differ from the engine's defaults (threads aside),
    so an eager and a compiled run of one engine sit side by side."""
    options = {k: v for k, v in engine_class(job.engine).configuration(job.options).items() if k not in ("threads", "cpus")}
    extra = f"__{safe_component(label(options))}" if options else ""
    return f"{job.engine}__{job.precision}__bs{job.batch_size}{extra}"


def _plan(chosen: list[str], runnable: list[str], precisions, report) -> list[tuple[str, str]]:
    """The engine x precision pairs to measure (the others said as skipped); none at all is an error, before the
    model is prepared: a run that measured nothing would otherwise end as a success and leave an earlier report."""
    planned = []
    for engine in runnable:
        for precision in precisions:
            if precision in engine_class(engine).precisions:
                planned.append((engine, precision))
            else:
                report(f"{engine} {precision}: skipped ({engine} runs {', '.join(engine_class(engine).precisions)})")
    if not planned:
        why = ", ".join(f"{e} runs {'/'.join(engine_class(e).precisions)}" for e in runnable) or "none of them is available here"
        raise DeployBenchError(f"--shape-mix: nothing to measure for --engines {','.join(chosen)} and --precisions "
                               f"{','.join(precisions)} ({why})")  # fmt: skip
    return planned


def _runnable(engine: str, report) -> bool:
    reason = engine_availability(engine)
    if reason is not None:
        report(f"{engine}: unavailable here ({reason})")
    return reason is None


def _prepare(model: RegisteredModel, engines: list[str], settings: SweepSettings, model_dir: Path, report) -> tuple[dict, Path]:
    """The ONNX export (dynamic dims) and the precision graphs, as a sweep prepares its example shape."""
    config = model.load_config()
    task = ShapeTask(model=model.name, loader=LoaderRef.of(model.loader_class), config_path=config.path, shapes=None,
                     tag=shape_tag([spec.example for spec in config.inputs]), model_dir=model_dir, exporter=settings.exporter,
                     calibration_samples=settings.calibration_samples, needs_onnx=any(engine_class(e).needs_onnx for e in engines),
                     graphs=tuple(plan.graphs_needed(engines, settings.precisions)), batch_sizes=(), accuracy_limit=None)  # fmt: skip
    prepared = prepare_in_child(task, settings.timeout_s) if settings.isolate else prepare(task)
    for message in prepared.messages:
        report(message)
    if prepared.setup_error:
        raise DeployBenchError(f"{model.name}: preparing the model failed: {prepared.setup_error}")
    for graph, error in prepared.graph_errors.items():
        report(f"{graph} graph: {error} (engines running it will fail)")
    return dict(prepared.graphs), prepared.cache_dir


def _job(model, engine, precision, batch_size, settings: SweepSettings, mix: MixSettings, distribution, graphs, cache_dir) -> MixJob:
    measure = settings.measure
    if measure.iterations is not None:
        run_length = {"iterations": measure.iterations, "warmup": measure.warmup, "min_duration_s": measure.min_duration}
    else:
        run_length = {"iterations": None, "warmup": min(measure.warmup, SHORT_WARMUP), "target_ci": SHORT["target_ci"],
                      "min_iterations": SHORT["min_iterations"], "min_duration_s": SHORT["min_duration"],
                      "max_duration_s": SHORT["max_duration"]}  # fmt: skip
    options = {k: v for k, v in measure.engine_options.items() if k in engine_class(engine).options}
    return MixJob(model=model.name, loader=LoaderRef.of(model.loader_class), config_path=model.load_config().path, graphs=graphs,
                  cache_dir=cache_dir, engine=engine, precision=precision, batch_size=batch_size, options=options,
                  distribution=distribution, run_length=run_length, mix_iterations=mix.mix_iterations, seed=mix.seed,
                  static=mix.static)  # fmt: skip


def _run(job: MixJob, settings: SweepSettings, folder: Path) -> ShapeMixResult:
    """In a child (``settings.isolate``) or here; a crash or timeout becomes a failed result, saved."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / FILE).unlink(missing_ok=True)
    job_path = folder / JOB_FILE  # also what the report reads the config's path from
    write_atomic(job_path, json.dumps(job.to_json(), indent=1))
    if not settings.isolate:
        result = run_mix_job(job)
        result.save(folder)
        return result
    from framework.sweep.isolation import describe_exit, run_child

    code = run_child(child_entry, (str(job_path), str(folder)), settings.timeout_s, "experiment")
    if code is None or not (folder / FILE).exists():
        why = f"timed out after {settings.timeout_s:g} s (child process killed)" if code is None else describe_exit(code)
        log = folder / "child.log"
        tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
        result = dataclasses.replace(job.empty_result(), status="failed", reason=why, traceback=tail)
        result.save(folder)
        return result
    return ShapeMixResult.from_json(json.loads((folder / FILE).read_text()))


def _outcome(result: ShapeMixResult) -> str:
    if result.status != "ok":
        return f"FAILED: {result.reason}"
    unpadded = result.mixes[0] if result.mixes else None
    if unpadded is None:
        return "ok"
    p99 = f"{unpadded.p99_ms:.3f}" if unpadded.p99_ms is not None else "n/a"
    return f"mix mean {unpadded.mean_ms:.3f} ms, p99 {p99} ms over {len(unpadded.latencies_ms)} requests"


__all__ = ["DEFAULT_MIX_ITERATIONS", "FOLDER", "MixSettings", "run_shape_mix"]
