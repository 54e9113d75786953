"""What a sweep will measure, decided before anything is built: the experiments, the fingerprint a finished
one must match to be kept, and ``blocked``: why an experiment cannot run, from facts already known.
Nothing here builds, loads or measures."""

from __future__ import annotations

from dataclasses import dataclass

from framework.artifacts.cache import settings_hash
from framework.artifacts.graphs import graph_recipe
from framework.engines import engine_availability, engine_class
from framework.results.record import Experiment
from framework.settings import SweepSettings


@dataclass(frozen=True)
class Blocked:
    status: str  # unavailable, skipped or failed
    reason: str


def experiments(model: str, shape_tag: str, shapes, engines: list[str], settings: SweepSettings, batch_size: int) -> list[Experiment]:
    """Every engine x precision at one batch size, in the order they run; a GPU engine's once per GPU kind
    ``--devices`` names (``--executor ray``)."""
    shapes = tuple(map(tuple, shapes))
    return [Experiment(model, shape_tag, shapes, engine, precision, batch_size, kind)
            for engine in engines for precision in settings.precisions for kind in device_kinds(engine, settings)]  # fmt: skip


def device_kinds(engine: str, settings: SweepSettings) -> tuple[str | None, ...]:
    """The GPU kinds an engine's experiments are planned for: each of ``--devices`` for a GPU engine, else none."""
    kinds = settings.cluster.devices if settings.cluster is not None else ()
    return tuple(kinds) if kinds and engine_class(engine).device == "cuda" else (None,)


def graph_of(engine: str, precision: str) -> str | None:
    """The ONNX graph an engine runs at a precision (int8 -> int8_symmetric for TensorRT); None without one."""
    if engine_availability(engine) is not None:
        return None
    cls = engine_class(engine)
    return cls.graph_for(precision) if cls.needs_onnx and precision in cls.precisions else None


def graphs_needed(engines: list[str], precisions) -> list[str]:
    """The ONNX graphs (besides the fp32 export) the runnable engines need at these precisions."""
    needed = {graph_of(e, p) for e in engines for p in precisions}
    return sorted(g for g in needed if g and g != "fp32")


def fingerprint(experiment: Experiment, settings: SweepSettings, model_digest: str | None, data_digest: str | None, machine: dict) -> str:
    """Everything that changes an experiment's figures: a finished experiment is kept only if it matches.
    ``model_digest`` covers the weights, the config and the model's code; ``machine`` the CPU, the GPUs and
    driver and the libraries that run it (``environment.fingerprint_fields``)."""
    graph = graph_of(experiment.engine, experiment.precision)
    return settings_hash({
        **settings.measure.fingerprint_fields(), "exporter": settings.exporter, "repeats": settings.repeats,
        "model": model_digest, "data": data_digest, "shapes": [list(s) for s in experiment.example_shapes],
        "batch_size": experiment.batch_size, "recipe": graph_recipe(graph) if graph else {}, "machine": machine,
        **({"tune_budget": settings.tune_budget} if settings.tune else {}), **({"full_references": True} if settings.full_references else {}),
    })  # fmt: skip


def blocked(experiment: Experiment, setup_error: str | None, graphs: dict, graph_errors: dict) -> Blocked | None:
    """Why this experiment cannot run (engine missing here, precision it does not run, model or graph that
    failed to prepare), or None. Pure: reads what ``prepare`` already recorded."""
    engine, precision = experiment.engine, experiment.precision
    unavailable = engine_availability(engine)
    if unavailable:
        return Blocked("unavailable", unavailable)
    cls = engine_class(engine)
    if precision not in cls.precisions:
        return Blocked("skipped", f"{engine} does not run {precision} (it runs {', '.join(cls.precisions)})")
    if setup_error:
        return Blocked("failed", f"preparing the model failed: {setup_error}")
    graph = cls.graph_for(precision) if cls.needs_onnx else None
    if graph and "fp32" not in graphs:
        return Blocked("failed", f"no ONNX file: {graph_errors.get('fp32', 'the export did not run')}")
    if graph and graph not in graphs:
        return Blocked("failed", f"no {precision} ONNX graph: {graph_errors.get(graph, 'it was not built')}")
    return None
