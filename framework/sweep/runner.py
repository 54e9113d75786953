"""The sweep: model x example shape x batch size x engine x precision, each experiment in its own process.

Experiments finished by an earlier run with the same settings are kept (resume); the others are measured
by ``experiment.run_experiment``, in a child process by default (``isolation``), ``repeats`` times when
asked, alternating engines. A failing experiment never stops the sweep; at the end the tables, the plots
and the report are rebuilt from the files on disk.
"""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from framework import environment
from framework.engines import engine_class
from framework.errors import DeployBenchError, one_line
from framework.sweep.experiment import (
    ShapeContext,
    base_record,
    batch_inputs,
    blocked_reason,
    prepare_shape,
    pytorch_dataset_reference,
    pytorch_reference,
    run_experiment,
    varied_inputs,
)
from framework.sweep.isolation import run_in_child, start_fork_server, write_shape_data
from framework.locking import results_lock, sigterm_as_interrupt
from framework.measure.timing import Timing
from framework.report.latency import plot_model
from framework.registry import RegisteredModel
from framework.report.document import write_report
from framework.results.store import (
    REPEATS_DIR,
    experiment_dir,
    is_complete,
    read_latencies_ms,
    safe_component,
    save_experiment,
    write_json,
    write_model_tables,
)
from framework.settings import SweepSettings
from framework.measure.stats import latency_summary

__all__ = ["SweepSettings", "run_model"]


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
                context = prepare_shape(model, shapes, engines, settings, model_dir, report)
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


def onnx_graph_of(engine_name: str, precision: str) -> str | None:
    """The ONNX graph an engine runs at a precision (int8 -> int8_symmetric for TensorRT); None for PyTorch."""
    try:
        cls = engine_class(engine_name)
    except ImportError:  # an engine this machine cannot import: recorded as unavailable, never resumed
        return None
    return cls.graph_for(precision) if cls.needs_onnx else None


def _run_batch(context: ShapeContext, engines: list[str], batch_size: int, settings: SweepSettings, progress: Progress) -> list[dict]:
    """Every engine x precision at one batch size. With ``repeats`` K, K rounds of one process per experiment,
    the order rotated each round, so slow drifts of the machine spread over every engine alike."""
    records, pending = [], []
    for engine_name in engines:
        for precision in settings.precisions:
            directory = experiment_dir(settings.output, context.model, context.tag, engine_name, precision, batch_size)
            fingerprint = settings.fingerprint(context, batch_size, onnx_graph_of(engine_name, precision))
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
    if batch_size not in context.shared_data:  # written once per run, for every child of this batch
        data_file = context.artifacts.cache_dir / f"inputs_references_bs{batch_size}.npz"
        try:
            batch = batch_inputs(context, batch_size)
            on_dataset = pytorch_dataset_reference(context, settings.accuracy_limit) if context.dataset is not None else {}
            write_shape_data(data_file, context.inputs, pytorch_reference(context, batch_size, batch),
                             pytorch_reference(context, batch_size, varied_inputs(batch), varied=True), on_dataset)  # fmt: skip
        except Exception as exc:  # e.g. a batch size the model cannot take: this experiment fails, the sweep goes on
            record.update(status="failed", reason=one_line(exc), traceback=traceback.format_exc(limit=8))
            save_experiment(directory, record)
            return record
        context.shared_data[batch_size] = data_file
    data_file = context.shared_data[batch_size]
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
