"""The sweep: plan -> keep what is done -> prepare -> run each job -> store -> publish.

Model x example shape x batch size x engine x precision; each experiment is a ``Job`` run in a fresh child
process by default (``isolation``), in this process with ``--in-process``, ``repeats`` times when asked,
the engines' order rotated each round. Experiments finished by an earlier run with the same settings are
kept (resume). A failing experiment never stops the sweep; at the end the tables, the plots and the report
are rebuilt from the files on disk.
"""

from __future__ import annotations

import dataclasses
import math
import time
import uuid
import warnings
from collections.abc import Callable
from pathlib import Path

from framework import environment
from framework.engines import engine_availability, engine_class
from framework.errors import DeployBenchError
from framework.files import remove_leftovers, safe_component
from framework.locking import results_lock, sigterm_as_interrupt
from framework.registry import RegisteredModel
from framework.results.record import Experiment, Result
from framework.results.store import REPEATS_DIR, is_complete, save_result
from framework.results.tables import progress_text
from framework.settings import SweepSettings
from framework.shapes import shape_tag
from framework.sweep import plan, precision_search, tune
from framework.sweep.isolation import run_and_save, run_in_child, start_fork_server
from framework.sweep.job import Job, LoaderRef
from framework.sweep.prepare import PreparedShape
from framework.sweep.progress import Progress
from framework.sweep.repeats import merge_repeats
from framework.sweep.shape_task import ShapeTask, prepare, prepare_in_child
from framework.sweep.tune import Tuned


def run_model(model: RegisteredModel, shapes_list: list, settings: SweepSettings, report: Callable[[str], None] | None = print) -> list[Result]:
    """Run the whole matrix for one model; return every result (also written to disk). Interrupted (Ctrl-C,
    SIGTERM), the run keeps every finished experiment and rebuilds the tables from them before it stops.
    ``report`` None: quiet."""
    from framework.report.publish import publish
    from framework.results.tables import write_model_tables

    settings.validate()
    model.load_config()  # a rejected config creates nothing
    attention, offered = settings.measure.engine_options.get("attention"), model.loader_class.attention_implementations
    if attention and attention not in offered:
        raise DeployBenchError(f"--option attention={attention}: model {model.name!r} offers "
                               f"{', '.join(offered) if offered else 'no choice of attention implementation'}")  # fmt: skip
    connecting = _connect(settings) if settings.cluster is not None else None
    engines = settings.chosen_engines()
    model_dir = settings.output / safe_component(model.name)
    try:
        model_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DeployBenchError(f"cannot create the results folder {model_dir}: {exc.strerror}") from None
    progress = Progress(len(shapes_list) * len(engines) * len(settings.precisions) * len(settings.batch_sizes), report or _silent)
    if connecting is not None:
        progress.phases["connecting to Ray"] = connecting
    report = report or _silent
    results: list[Result] = []
    with results_lock(model_dir), sigterm_as_interrupt():
        remove_leftovers(model_dir)
        if settings.isolate:
            start_fork_server()  # imports torch & co. in the background
        try:
            environment.record(model_dir / "environment.json")
            for shapes in shapes_list:
                results += _run_shape(model, shapes, engines, settings, model_dir, progress)
        finally:
            write_model_tables(model_dir, settings.baseline)
    with progress.phase("report"):
        published = publish(model_dir, keep_outliers=settings.keep_outliers, tables=False, baseline=settings.baseline)
    report(f"plots: {len(published.plots)} in {model_dir / 'plots'}")
    report(f"results: {model_dir / 'summary.md'}; report: {published.report_md} and {published.report_html}")
    report(progress.time_text())
    verdict = verdict_text(model_dir, settings.baseline)
    if verdict:
        report("\nVerdict, each engine at its best (median: device time for GPU engines, host clock for CPU engines):\n" + verdict)
    return results


def _connect(settings: SweepSettings) -> float:
    """``--executor ray``: connect before anything is built (engines this machine cannot run may run on a node
    of the cluster); the seconds it took."""
    from framework.engines import ENGINES
    from framework.sweep.ray_executor import prepare_cluster

    start_fork_server()  # imports torch & co. in the background while Ray starts
    start = time.monotonic()
    prepare_cluster(settings.cluster, list(settings.engines or ENGINES))
    return time.monotonic() - start


def verdict_text(model_dir: Path, baseline: tuple[str, str] | None) -> str:
    """The report's verdict tables as plain text, from every result on disk (earlier runs' kept ones too)."""
    from framework.results.speedup import missing_baseline
    from framework.results.store import load_results
    from framework.results.tables import model_speedups
    from framework.results.verdict import terminal_text

    results = load_results(model_dir)
    speedup_of = model_speedups(model_dir, results, baseline)
    note = missing_baseline(results, speedup_of, baseline)
    return terminal_text(results, speedup_of) + (f"\n{note}" if note else "")


def _run_shape(model: RegisteredModel, shapes, engines: list[str], settings: SweepSettings, model_dir: Path, progress: Progress) -> list[Result]:
    config = model.load_config()
    task = ShapeTask(model=model.name, loader=LoaderRef.of(model.loader_class), config_path=config.path,
                     shapes=tuple(map(tuple, shapes)) if shapes else None,
                     tag=shape_tag(shapes or [spec.example for spec in config.inputs]), model_dir=model_dir,
                     exporter=settings.exporter, calibration_samples=settings.calibration_samples,
                     needs_onnx=any(engine_class(e).needs_onnx for e in engines if engine_availability(e) is None),
                     graphs=tuple(plan.graphs_needed(engines, settings.precisions)), batch_sizes=tuple(settings.batch_sizes),
                     accuracy_limit=settings.measure.accuracy_limit, threads=preparation_threads(settings),
                     full_references=settings.full_references)  # fmt: skip
    with progress.phase("preparing"):
        prepared = prepare_in_child(task, settings.timeout_s) if settings.isolate else prepare(task)
    for stage, seconds in prepared.stages_s.items():
        progress.preparation[stage] = progress.preparation.get(stage, 0.0) + seconds
    for message in prepared.messages:
        progress.report(message)
    for warning in prepared.warnings:
        warnings.warn(warning, stacklevel=2)
    with progress.phase("measuring"):
        if settings.cluster is not None:  # --executor ray: every batch size's pending experiments at once
            return _run_shape_on_ray(prepared, engines, settings, progress)
        results = []
        for batch_size in settings.batch_sizes:
            experiments = plan.experiments(prepared.model, prepared.tag, prepared.shapes, engines, settings, batch_size)
            results += _run_batch(prepared, experiments, settings, progress)
        return results


def preparation_threads(settings: SweepSettings) -> int | None:
    """With ``--executor ray``, the preparation's PyTorch threads are half the cores: Ray's workers start beside it
    (always on a local instance; on a head node that runs experiments too), and a forward pass that uses every
    core stalls in its thread barriers while a few of them are busy (README, "Sweeps on Ray")."""
    from framework.machine_check import default_threads

    return max(1, default_threads() // 2) if settings.cluster is not None else None


def _run_shape_on_ray(prepared: PreparedShape, engines: list[str], settings: SweepSettings, progress: Progress) -> list[Result]:
    from framework.sweep.ray_executor import measure_on_ray

    done, groups = [], []  # per experiment, its job (or one per process with --repeats)
    for batch_size in settings.batch_sizes:
        experiments = plan.experiments(prepared.model, prepared.tag, prepared.shapes, engines, settings, batch_size)
        settled, pending = _settle(prepared, experiments, settings, progress)
        done += settled
        for e, fp in pending:
            folder = e.folder(settings.output)
            targets = [folder] if settings.repeats == 1 else [folder / REPEATS_DIR / str(k) for k in range(settings.repeats)]
            groups.append([make_job(e, prepared, settings, fp, prepared.references[batch_size], target) for target in targets])
    return done + measure_on_ray(groups, settings, progress)


def _run_batch(prepared: PreparedShape, experiments: list[Experiment], settings: SweepSettings, progress: Progress) -> list[Result]:
    """Settle what needs no measuring (kept, blocked), then measure the rest; with ``repeats`` K, K rounds of
    one process per experiment, the order rotated each round, so slow drifts of the machine spread alike."""
    done, pending = _settle(prepared, experiments, settings, progress)
    if not pending:
        return done
    return done + _measure(prepared, pending, prepared.references[experiments[0].batch_size], settings, progress)


def _settle(prepared: PreparedShape, experiments: list[Experiment], settings: SweepSettings, progress: Progress) -> tuple[list[Result], list]:
    """Results for the experiments that need no measuring (kept from an earlier run, or blocked), and the
    (experiment, fingerprint) pairs left to measure."""
    done, pending, here = [], [], environment.fingerprint_fields()
    for experiment in experiments:
        device = engine_class(experiment.engine).device
        cluster = settings.cluster.fingerprint_fields(device, experiment.device_kind) if settings.cluster and settings.cluster.devices else {}
        machine = {**here, **cluster}
        fingerprint = plan.fingerprint(experiment, settings, prepared.model_digest, prepared.data_digest, machine)
        folder = experiment.folder(settings.output)
        kept = None if settings.force else is_complete(folder, fingerprint)
        kept = None if kept and precision_search.searched_without_search(kept, settings.precision_search, settings.search_budget) else kept
        if kept:
            done.append(kept)
            progress(experiment, "kept from an earlier run (--force measures it again)")
            continue
        blocked = plan.blocked(experiment, prepared.setup_error, prepared.graphs, prepared.graph_errors)
        if blocked is None and experiment.batch_size in prepared.reference_errors:
            blocked = plan.Blocked("failed", prepared.reference_errors[experiment.batch_size][0])
        if blocked:
            detail = prepared.reference_errors.get(experiment.batch_size, (None, prepared.setup_traceback))[1] if blocked.status == "failed" else None
            result = _base(experiment, prepared, settings, fingerprint).ended(blocked.status, blocked.reason, traceback=detail)
            save_result(folder, result)
            done.append(result)
            progress(experiment, progress_text(result))
        else:
            pending.append((experiment, fingerprint))
    return done, pending


def _measure(prepared: PreparedShape, pending: list, data_file: Path, settings: SweepSettings, progress: Progress) -> list[Result]:
    measured: dict[Experiment, list[Result]] = {e: [] for e, _ in pending}
    tuned = {e: _tune(e, prepared, data_file, settings, progress) for e, _ in pending} if settings.tune else {}
    for repeat in range(settings.repeats):
        shift = repeat % len(pending)
        for experiment, fingerprint in pending[shift:] + pending[:shift]:
            folder = experiment.folder(settings.output)
            target = folder if settings.repeats == 1 else folder / REPEATS_DIR / str(repeat)
            job = make_job(experiment, prepared, settings, fingerprint, data_file, target, tuned.get(experiment))
            result = _measured(job, tuned.get(experiment), settings, progress)
            result = precision_search.searched(result, job, prepared, settings, lambda j, t: _run_job(j, settings, t, progress), progress.report)
            measured[experiment].append(result)
            if settings.repeats > 1:
                progress(experiment, f"process {repeat + 1}/{settings.repeats}: {progress_text(result)}", False)
    results = []
    for experiment, _ in pending:
        result = measured[experiment][0] if settings.repeats == 1 else merge_repeats(measured[experiment])
        if settings.repeats > 1:
            save_result(experiment.folder(settings.output), result)
        results.append(result)
        progress(experiment, progress_text(result))
    return results


def _measured(job: Job, tuned: Tuned | None, settings: SweepSettings, progress: Progress) -> Result:
    """Run the job. With ``--tune`` (one process per experiment), the defaults' full measurement from the
    search stands in when they won (no second measurement of the same configuration) or when the chosen
    configuration, measured fully, came out slower than them (its short measurement misjudged it)."""
    defaults = tuned.tried[0] if tuned is not None and tuned.tried and tuned.tried[0].is_usable and settings.repeats == 1 else None
    if defaults is not None and not tuned.options:
        return _promoted(defaults, job)
    result = _run_job(job, settings, progress=progress)
    if defaults is not None and result.is_valid and result.headline.median_ms > defaults.headline.median_ms:
        return _promoted(defaults, job, rejected=result)
    return result


def _promoted(defaults: Result, job: Job, rejected: Result | None = None) -> Result:
    """The defaults' result as the experiment's own, with the search's summary (and what it rejected)."""
    tuning = {**(job.tuning or {}), "chosen": "default"}
    if rejected is not None:
        tuning["rejected"] = {"configuration": tune.label(rejected.configuration),
                              "median_ms": rejected.headline.median_ms, "why": "slower than the defaults when measured fully"}  # fmt: skip
    result = dataclasses.replace(defaults, status="ok", reason="", fingerprint=job.fingerprint, run_id=job.run_id, tuning=tuning)
    for leftover in ("job.json", "child.log"):  # the rejected configuration's: rerunning it would not give this result
        (job.result_dir / leftover).unlink(missing_ok=True)
    save_result(job.result_dir, result)
    return result


def _run_job(job: Job, settings: SweepSettings, timeout_s: float | None = None, progress: Progress | None = None) -> Result:
    """One experiment process; ``progress`` counts its seconds as slot time (the time line's busy share: tried
    configurations and recipe steps occupy the slot as much as the final measurement)."""
    result = run_in_child(job, timeout_s or settings.timeout_s) if settings.isolate else run_and_save(job)
    if progress is not None:
        progress.ran(result)
    return result


def _tune(experiment: Experiment, prepared: PreparedShape, data_file: Path, settings: SweepSettings, progress: Progress) -> Tuned:
    """``--tune`` for one experiment: its engine's configurations (those the user fixed left out), each a short
    job of its own, run and kept like any other (``sweep.tune``)."""
    fixed, cls = settings.fixed_options(), engine_class(experiment.engine)
    space = with_attention(cls.tuning_space(prepared.config, experiment.precision, experiment.batch_size),
                           prepared.loader.load_class().attention_implementations if "attention" in cls.options else ())  # fmt: skip
    space = [c for c in space if not set(c) & fixed]
    machine = environment.fingerprint_fields()

    def trial(options: dict) -> SweepSettings:  # a tried configuration's figures do not depend on the budget
        return dataclasses.replace(settings, tune=False, measure=tune.short_measure(settings.measure, options))

    def fingerprint(options: dict) -> str:
        return plan.fingerprint(experiment, trial(options), prepared.model_digest, prepared.data_digest, machine)

    def run(options: dict, target: Path, timeout_s: float | None) -> Result:
        job = make_job(experiment, prepared, trial(options), fingerprint(options), data_file, target)
        return _run_job(job, settings, min(settings.timeout_s, timeout_s or math.inf), progress)

    found = tune.tune(space, experiment.folder(settings.output), settings.tune_budget, run, fingerprint,
                      lambda line: progress.report(f"{experiment.name}: {line}"), cls.expected_tuning_s, keep=not settings.force)  # fmt: skip
    return found


def with_attention(space: list[dict], implementations: tuple[str, ...]) -> list[dict]:
    """The model's other attention implementations (``ModelLoader.attention_implementations``, the default
    first), each with the space's three most promising configurations, tried right after those."""
    others = [{**c, "attention": a} for a in implementations[1:] for c in space[:3]]
    return space[:3] + others + space[3:]


def make_job(experiment: Experiment, prepared: PreparedShape, settings: SweepSettings, fingerprint: str, data_file: Path,
             result_dir: Path, tuned: Tuned | None = None) -> Job:  # fmt: skip
    """The job that measures ``experiment``; with ``tuned``, in the configuration ``--tune`` chose."""
    cls = engine_class(experiment.engine)
    measure = settings.measure
    if tuned is not None:
        measure = dataclasses.replace(measure, engine_options={**measure.engine_options, **tuned.options})
    return Job(experiment=experiment, runtime=cls.runtime, device=cls.device, measure=measure, config_path=prepared.config.path,
               loader=prepared.loader, graphs=dict(prepared.graphs), cache_dir=prepared.cache_dir, data_file=data_file,
               has_dataset=prepared.has_dataset, result_dir=result_dir, model_dir=settings.output / safe_component(experiment.model),
               fingerprint=fingerprint, run_id=uuid.uuid4().hex, isolated=settings.isolate, parameters=prepared.parameters,
               load_s=prepared.load_s, export=prepared.export, machine=environment.fingerprint_fields(),
               tuning=tuned.summary() if tuned is not None else None)  # fmt: skip


def _silent(_: str) -> None:
    pass


def _base(experiment: Experiment, prepared: PreparedShape, settings: SweepSettings, fingerprint: str) -> Result:
    return make_job(experiment, prepared, settings, fingerprint, Path(), experiment.folder(settings.output)).pending_result()


__all__ = ["SweepSettings", "make_job", "run_model"]
