"""Preparing one example shape as a task of its own, under the same isolation and timeout as experiments.

Loading the model, the ONNX export with its check, the fp16/int8 graphs and the PyTorch references run the
user's code (``forward``) and can hang or crash like any experiment: in a child process (a fork of the same
server) with the sweep's ``--timeout``, a hang or crash becomes a failed preparation, recorded for every
experiment of that shape, and the sweep goes on with the next shape. The child sends back the prepared
shape without the module or arrays (``PreparedShape.light``), as JSON in a staging file.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
import traceback
import uuid
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

from framework.config import load_config
from framework.errors import one_line
from framework.files import safe_component, write_atomic
from framework.sweep.job import LoaderRef
from framework.sweep.prepare import PreparedShape, build_graphs, prepare_shape
from framework.sweep.references import References


@dataclass(frozen=True)
class ShapeTask:
    model: str
    loader: LoaderRef
    config_path: Path
    shapes: tuple | None  # example shapes, one per input; None: the config's
    tag: str
    model_dir: Path
    exporter: str
    calibration_samples: int
    needs_onnx: bool
    graphs: tuple[str, ...]  # fp16, int8, ... besides the fp32 export
    batch_sizes: tuple[int, ...]
    accuracy_limit: int | None
    threads: int | None = None  # the preparation's PyTorch threads; None: the machine's default
    full_references: bool = False  # a forward pass at every batch size (``references.References``)

    def failed(self, reason: str, detail: str | None = None) -> PreparedShape:
        """What the sweep records when the preparation itself died."""
        config = load_config(self.config_path)
        shapes = self.shapes or tuple(spec.example for spec in config.inputs)
        cache_dir = self.model_dir / "cache" / safe_component(self.tag)
        shapes = tuple(map(tuple, shapes))
        return PreparedShape(self.model, self.tag, shapes, config, self.loader, cache_dir, setup_error=reason, setup_traceback=detail)


def prepare(task: ShapeTask) -> PreparedShape:
    """Everything the shape's experiments share, or the reasons it could not be made (never raises). What it
    says and warns comes back in ``messages`` and ``warnings``, for the sweep's process to show."""
    messages: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        prepared = _prepare(task, messages.append)
    said = tuple(dict.fromkeys(f"{w.filename}:{w.lineno}: {w.message}" if w.category is not UserWarning else str(w.message) for w in caught))
    return dataclasses.replace(prepared, messages=tuple(messages), warnings=said)


def _prepare(task: ShapeTask, report) -> PreparedShape:
    start = time.perf_counter()
    if task.threads:
        import torch

        torch.set_num_threads(task.threads)
    try:
        loader_class = task.loader.load_class()
        prepared = prepare_shape(loader_class, load_config(task.config_path), task.shapes, task.model_dir, task.exporter,
                                 task.calibration_samples, task.needs_onnx, report)  # fmt: skip
    except Exception as exc:
        return task.failed(one_line(exc), traceback.format_exc(limit=12))
    if prepared.setup_error:
        return prepared.light()
    stages = {"model": time.perf_counter() - start - prepared.conversion_s, "export": prepared.conversion_s}
    start = time.perf_counter()
    prepared = build_graphs(prepared, list(task.graphs))
    stages["graphs"], start = time.perf_counter() - start, time.perf_counter()
    references, errors, writer = {}, {}, References(prepared, task.accuracy_limit, report, task.full_references)
    for batch_size in task.batch_sizes:
        try:  # e.g. a batch size the model cannot take: its experiments fail, the others go on
            references[batch_size] = writer.write(batch_size)
        except Exception as exc:
            errors[batch_size] = (one_line(exc), traceback.format_exc(limit=8))
    stages["references"] = time.perf_counter() - start
    return PreparedShape.from_json({**prepared.to_json(), "references": references, "reference_errors": errors,
                                    "stages_s": {k: round(v, 3) for k, v in stages.items()}})  # fmt: skip


def prepare_in_child(task: ShapeTask, timeout_s: float) -> PreparedShape:
    """``prepare`` in a fresh child of the fork server, killed at ``timeout_s``."""
    from framework.sweep.isolation import describe_exit, run_child

    staging = task.model_dir / f".prepare-{uuid.uuid4().hex}.json"
    try:
        code = run_child(_prepare_entry, (str(staging), json.dumps(asdict(task), default=str)), timeout_s, "preparation")
        if code is None:
            return task.failed(f"preparing the shape (loading, export, references) timed out after {timeout_s:g} s (child process killed)")
        if code != 0 or not staging.exists():
            return task.failed(f"preparing the shape (loading, export, references) died: {describe_exit(code)}")
        return PreparedShape.from_json(json.loads(staging.read_text()))
    finally:
        staging.unlink(missing_ok=True)


def _prepare_entry(staging: str, task_json: str) -> None:
    data = json.loads(task_json)
    task = ShapeTask(**{**data, "loader": LoaderRef(**data["loader"]), "config_path": Path(data["config_path"]),
                        "model_dir": Path(data["model_dir"]), "shapes": tuple(map(tuple, data["shapes"])) if data["shapes"] else None,
                        "graphs": tuple(data["graphs"]), "batch_sizes": tuple(data["batch_sizes"])})  # fmt: skip
    prepared = prepare(task)
    write_atomic(Path(staging), json.dumps(prepared.to_json()))
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # skip interpreter teardown: nothing left to flush, and a library's atexit could hang
