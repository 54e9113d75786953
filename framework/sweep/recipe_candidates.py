"""The precision search's first half: build the candidate graphs and judge them on the calibration set.

For one (model shape, engine, precision) whose first recipe failed: every other recipe of the engine's ladder
(``artifacts.recipes``) is built and run on the calibration set with ONNX Runtime CPU against the fp32 graph;
when none passes there, node-level fallback starts from the most accurate one (``artifacts.sensitivity``:
rank the nodes one at a time, then exclude as few of the most sensitive as possible). Only the calibration set
is used here; the held-out data (the model's dataset, the timed and varied inputs) judge the measured steps
(``sweep.precision_search``). It runs in a child process of its own (the quantizer runs the model's graph and
can crash or hang like any experiment) and returns the steps as JSON.

Cached: the plan (every step's recipe, its calibration figures, the ranking) under a key of the fp32 graph's
SHA-256, the calibration batches, the engine, the floor and the library versions; each step's graph under its
recipe. A rerun reuses them; a changed graph, calibration set or library searches again.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from framework.artifacts.cache import cached_build, file_sha256, is_current, record_built
from framework.artifacts.graphs import INT8_VARIANTS, calibration_batches, calibration_digest
from framework.artifacts.recipes import LADDER_VERSION, Recipe, build_recipe, converted_nodes, ladder, prepare_source
from framework.artifacts.sensitivity import Probe, Ranking, fewest_exclusions, rank_nodes
from framework.files import safe_component, write_atomic
from framework.measure.agreement import compare_outputs
from framework.precisions import precision as precision_named

SEARCH_DIR = "search"  # under the shape's cache folder: the candidate graphs and the cached plans
# On the calibration set a candidate must keep this share of the allowed error in reserve for held-out data: 10%
# in the first round; when no step of it was valid on held-out data, a second round asks for half.
MARGINS = (0.1, 0.5)
WORST_LOSS = 2.0  # 1 - cosine of opposite outputs: what a node whose outputs overflow to Inf or NaN scores
UNBUILT_LOSS = -1.0  # a node whose probe could not be built: ranked last
OVERLAP = (
    "the model has no calibration set of its own (load_calibration_data): the search steers by its dataset's first "
    "samples, which the held-out check on the dataset covers too"
)
OVERLAP_TIMED = (
    "the model has neither a calibration set (load_calibration_data) nor a dataset: the search steers by the timed input, "
    "which the held-out check covers too (only the varied inputs are held out)"
)
PHASE_SHARE = 0.75  # of --search-budget, for building and judging candidates; the rest measures them


@dataclass(frozen=True)
class SearchRequest:
    """What the child needs: where the model and its graphs are, the engine's graph and the budget."""

    loader: dict  # job.LoaderRef as a dict
    config_path: str
    shapes: list
    model_dir: str
    cache_dir: str
    source: str  # the fp32 ONNX export
    default_graph: str  # the first recipe's graph, already built and measured
    engine: str
    device: str
    graph: str  # int8, int8_symmetric or fp16
    precision: str
    calibration_samples: int
    threads: int
    budget_s: float
    margin: float = MARGINS[0]
    fallback: bool = False  # node-level fallback even when a whole-graph recipe passed on the calibration set


def passes(figures: dict, precision: str, margin: float) -> bool:
    """The precision's floors (``precisions.py``), with ``margin`` of the allowed error kept in reserve."""
    p = precision_named(precision)
    floor = 1 - (1 - margin) * (1 - p.cosine_floor)
    return (figures["cosine_similarity"] >= floor and figures["relative_l2_error"] <= (1 - margin) * p.relative_l2_ceiling
            and figures["share_within_tolerance"] >= p.close_share_floor and not figures["has_nan_or_inf"])  # fmt: skip


class Judge:
    """Runs a graph on the calibration batches with ONNX Runtime CPU and compares it with the fp32 graph."""

    def __init__(self, source: Path, batches: list[dict[str, np.ndarray]], precision: str, threads: int) -> None:
        self.batches, self.precision, self.threads = batches, precision, threads
        self.reference = self.outputs(source)

    def outputs(self, path: Path) -> dict[str, np.ndarray]:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        names = [o.name for o in session.get_outputs()]
        runs = [session.run(names, feed) for feed in self.batches]
        return {name: np.concatenate([run[i] for run in runs]) for i, name in enumerate(names)}

    def figures(self, path: Path) -> dict:
        worst = compare_outputs(self.reference, self.outputs(path), self.precision)["worst"]
        keys = ("cosine_similarity", "relative_l2_error", "share_within_tolerance", "has_nan_or_inf")
        return {k: worst[k] for k in keys}


def plan_key(request: SearchRequest, calibration_sha256: str) -> dict:
    import importlib.metadata

    import onnx
    import onnxruntime

    return {"source_sha256": file_sha256(Path(request.source)), "calibration_sha256": calibration_sha256, "engine": request.engine,
            "graph": request.graph, "device": request.device, "precision": request.precision, "ladder": LADDER_VERSION,
            "margin": request.margin, "fallback": request.fallback, "onnxruntime": onnxruntime.__version__, "onnx": onnx.__version__,
            "onnxconverter_common": importlib.metadata.version("onnxconverter-common")}  # fmt: skip


def find_candidates(request: SearchRequest, batches: list[dict[str, np.ndarray]]) -> dict:
    """The plan: ``steps`` (label, recipe, graph, calibration figures, passed, build_s, stage), the
    ``ranking`` when node-level fallback ran, ``spent_s``, and ``reused`` when it came from the cache."""
    folder = Path(request.cache_dir) / SEARCH_DIR
    path = folder / f"{safe_component(request.engine)}__{request.precision}__margin{request.margin:g}.plan.json"
    key = plan_key(request, calibration_digest(batches))
    reusable, why = is_current(path, key)
    if reusable:
        plan = json.loads(path.read_text())
        broken = next((Path(s["graph"]).name for s in plan["steps"][1:] if not s.get("error") and not is_current(s["graph"], _graph_key(s))[0]), None)
        if broken is None and (plan["complete"] and "not_built" in plan or plan["budget_s"] >= request.budget_s):  # not_built: how complete is judged
            return {**plan, "reused": True}
        why = f"step graph {broken} is missing, truncated or corrupted" if broken else "the cached search was cut short by a smaller --search-budget"
    plan = _search(request, batches, folder, key)
    write_atomic(path, json.dumps(plan, indent=1))
    record_built(path, key)
    return {**plan, "reused": False, "cache_note": None if why == "not cached" else f"cached plan not used ({why.removeprefix('rebuilding: ')})"}


def _graph_key(step: dict) -> dict:
    """The settings a step's graph was cached under (its ``.meta.json``), for checking it is still intact."""
    from framework.artifacts.cache import meta_path

    try:
        return json.loads(meta_path(Path(step["graph"])).read_text())["settings"]
    except (OSError, ValueError, KeyError, TypeError):
        return {"unreadable": True}


def _search(request: SearchRequest, batches: list, folder: Path, key: dict) -> dict:
    start = time.monotonic()
    deadline = start + PHASE_SHARE * request.budget_s
    prepared = folder / "model_prepared.onnx"
    cached_build(prepared, {"source_sha256": key["source_sha256"], "onnxruntime": key["onnxruntime"]},
                 lambda target: prepare_source(Path(request.source), target))  # fmt: skip
    judge = Judge(Path(request.source), batches, request.precision, request.threads)
    recipes = ladder(request.graph, request.device)
    steps = [_step(recipes[0], Path(request.default_graph), judge, request, "first recipe", 0.0)]
    for recipe in recipes[1:]:
        if time.monotonic() > deadline:
            break
        steps.append(_built_step(recipe, prepared, folder, batches, judge, request, "ladder", key))
    ranking, not_built = None, [r.label for r in recipes[len(steps) :]]
    fallback = request.fallback or not any(s["passed"] for s in steps)
    done = not not_built and not fallback  # complete: no later run with a larger budget would try more
    if fallback and time.monotonic() <= deadline:
        base = max((s for s in steps if s["calibration"]), key=lambda s: s["calibration"]["cosine_similarity"])
        ranking, probes = _fallback(Recipe.from_dict(base["recipe"]), Path(base["graph"]), prepared, folder, batches, judge, request, deadline, key)
        done = not not_built and _fallback_done(ranking, probes)
        steps += probes
    return {"steps": steps, "ranking": ranking.to_dict() if ranking else None, "complete": done, "not_built": not_built,
            "spent_s": round(time.monotonic() - start, 1), "budget_s": request.budget_s}  # fmt: skip


def _fallback_done(ranking: Ranking, probes: list[dict]) -> bool:
    """Every node ranked, and the count found (a probe passed) or every node tried in float (none passes)."""
    if not ranking.complete:
        return False
    return not ranking.nodes or any(p["passed"] for p in probes) or bool(probes) and len(probes[-1]["recipe"]["excluded"]) == len(ranking.nodes)


def _step(recipe: Recipe, graph: Path, judge: Judge, request: SearchRequest, stage: str, build_s: float) -> dict:
    figures = judge.figures(graph)
    return {"label": recipe.label, "recipe": recipe.to_dict(), "graph": str(graph), "calibration": figures,
            "passed": passes(figures, request.precision, request.margin), "build_s": round(build_s, 2), "stage": stage}  # fmt: skip


def _built_step(recipe: Recipe, prepared: Path, folder: Path, batches: list, judge: Judge, request: SearchRequest, stage: str, key: dict) -> dict:
    from framework.artifacts.cache import settings_hash

    settings = {"source_sha256": key["source_sha256"], "calibration_sha256": key["calibration_sha256"], "onnxruntime": key["onnxruntime"],
                "onnxconverter_common": key["onnxconverter_common"], "recipe": recipe.to_dict(), "ladder": LADDER_VERSION}  # fmt: skip
    target = folder / f"{request.graph}_{settings_hash(settings)[:16]}.onnx"
    try:
        info, _, _ = cached_build(target, settings, lambda path: {"build_s": build_recipe(recipe, prepared, path, batches)})
        return _step(recipe, target, judge, request, stage, info.get("build_s", 0.0))
    except Exception as exc:  # a recipe the quantizer refuses (Entropy's histogram on a huge range): a failed step, the search goes on
        from framework.errors import one_line

        return {"label": recipe.label, "recipe": recipe.to_dict(), "graph": str(target), "calibration": None, "passed": False,
                "build_s": None, "stage": stage, "error": f"build failed: {one_line(exc)}"}  # fmt: skip


def _fallback(base: Recipe, base_graph: Path, prepared: Path, folder: Path, batches: list, judge: Judge, request: SearchRequest,
              deadline: float, key: dict) -> tuple[Ranking, list[dict]]:  # fmt: skip
    """Node-level fallback from ``base``: rank the nodes it converts, then the fewest exclusions that pass."""
    import onnx

    candidates = converted_nodes(base, onnx.load(str(prepared), load_external_data=False), onnx.load(str(base_graph), load_external_data=False))

    def loss_alone(node: str) -> float:
        with tempfile.TemporaryDirectory(prefix=".probe.", dir=folder) as scratch:
            graph = Path(scratch) / "probe.onnx"
            try:
                build_recipe(base.quantizing_only(node), prepared, graph, batches)
                figures = judge.figures(graph)
            except Exception:  # the converter refuses this probe, or writes a graph ONNX Runtime refuses (fp16 casts at an output)
                return UNBUILT_LOSS
            cosine = figures["cosine_similarity"]
            return WORST_LOSS if figures["has_nan_or_inf"] or not np.isfinite(cosine) else 1.0 - cosine

    ranking = rank_nodes(candidates, loss_alone, deadline)
    steps: list[dict] = []

    def probe(excluded: tuple[str, ...]) -> Probe:
        steps.append(_built_step(base.excluding(excluded), prepared, folder, batches, judge, request, "fallback", key))
        return Probe(excluded, steps[-1]["passed"], steps[-1]["calibration"])

    fewest_exclusions(ranking.nodes, probe, deadline)
    return ranking, steps


def calibration_of(request: SearchRequest) -> tuple[list[dict[str, np.ndarray]], str | None]:
    """The calibration batches the sweep's preparation quantized with (``prepare.prepare_shape``, same rules), and
    how they overlap the held-out data (None: apart): a loader without a calibration set of its own calibrates on
    its dataset's first samples, which the dataset check covers too, or without a dataset on the timed input."""
    from framework.config import load_config
    from framework.sweep.job import LoaderRef
    from framework.sweep.prepare import prepare_shape

    config = load_config(Path(request.config_path))
    prepared = prepare_shape(LoaderRef(**request.loader).load_class(), config, request.shapes, Path(request.model_dir), "torchscript",
                             request.calibration_samples, False, lambda _: None)  # fmt: skip
    if prepared.setup_error:
        raise RuntimeError(f"cannot load the calibration data: {prepared.setup_error}")
    batch = INT8_VARIANTS["int8"]["calibration_batch"]
    loader = LoaderRef(**request.loader).load_class()(config, [tuple(s) for s in request.shapes])
    overlap = None if loader.load_calibration_data() is not None else OVERLAP if prepared.dataset is not None else OVERLAP_TIMED
    return calibration_batches(list(prepared.calibration), list(config.inputs), batch), overlap


def _candidates(request: SearchRequest) -> dict:
    batches, overlap = calibration_of(request)
    return {**find_candidates(request, batches), "calibration_apart": overlap is None, "calibration_overlap": overlap}


def candidates_in_child(request: SearchRequest, timeout_s: float, isolate: bool) -> dict:
    """``find_candidates`` in a child of the fork server (``isolate``), else here; {'error': ...} when it failed."""
    import traceback

    from framework.errors import one_line
    from framework.sweep.isolation import describe_exit, run_child

    if not isolate:
        try:
            return _candidates(request)
        except Exception as exc:
            return {"error": one_line(exc), "traceback": traceback.format_exc(limit=8)}
    staging = Path(request.model_dir) / f".search-{os.getpid()}-{time.monotonic_ns()}.json"
    try:
        code = run_child(_entry, (str(staging), json.dumps(asdict(request))), timeout_s, "preparation")
        if code is None:
            return {"error": f"the precision search's candidate phase timed out after {timeout_s:g} s (child process killed)"}
        if code != 0 or not staging.exists():
            return {"error": f"the precision search's candidate phase died: {describe_exit(code)}"}
        return json.loads(staging.read_text())
    finally:
        staging.unlink(missing_ok=True)


def _entry(staging: str, request_json: str) -> None:
    import traceback

    from framework.errors import one_line

    request = SearchRequest(**json.loads(request_json))
    try:
        plan = _candidates(request)
    except Exception as exc:
        plan = {"error": one_line(exc), "traceback": traceback.format_exc(limit=8)}
    write_atomic(Path(staging), json.dumps(plan))
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
