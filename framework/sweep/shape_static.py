"""Static against dynamic: each bucket on an engine built for exactly its shape, next to the dynamic engine.

What "built for one shape" means per engine:
- ONNX Runtime (CPU, CUDA): the graph with every input dim fixed (``onnxruntime.tools.make_dynamic_shape_fixed``),
  so its optimizer and memory planner know every shape.
- TensorRT (native and the ONNX Runtime EP): an engine whose profile is min = opt = max = the bucket's shape,
  built into a cache folder of its own (the dynamic engine's plan stays).
- PyTorch with ``compile``: ``torch.compile(dynamic=False)``, one engine compiled per bucket, against the
  dynamic engine's ``dynamic=True``.
- ``pytorch-cuda`` eager: a CUDA graph captured per bucket, against eager launches.
- ``pytorch-cpu`` eager has no static form (eager runs every shape the same way): the note says so.
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from pathlib import Path

from framework.config import ShapeProfile
from framework.errors import one_line
from framework.measure.shape_mix import compiled_graphs, time_paired
from framework.results.shape_mix_record import StaticBucket
from framework.shapes import shape_tag

FIXED_GRAPH, EXACT_PROFILE = "fixed-dims ONNX graph", "TensorRT profile min=opt=max"
STATIC_COMPILE, CUDA_GRAPH = "torch.compile(dynamic=False)", "CUDA graph per bucket"


def static_form(cls, options: dict) -> tuple[str | None, str]:
    """``(how, "")`` for an engine that can specialise to one shape, else ``(None, why not)``."""
    if cls.name in ("tensorrt", "onnxruntime-tensorrt"):
        return EXACT_PROFILE, ""
    if cls.runtime == "onnxruntime":
        return FIXED_GRAPH, ""
    if cls.runtime == "pytorch" and options.get("compile"):
        return STATIC_COMPILE, ""
    if cls.runtime == "pytorch" and "cuda_graph" in cls.options:
        if options.get("cuda_graph"):
            return None, "a CUDA graph is already captured per bucket (cuda_graph=true): the dynamic run is the static one"
        return CUDA_GRAPH, ""
    return None, f"{cls.name} runs every shape the same way (eager): it has no static form"


def static_buckets(job, cls, artifacts, inputs: dict, dynamic_steps: dict) -> tuple[list[StaticBucket], str]:
    """Per bucket, a fresh engine specialised to its shape, timed in alternation with the dynamic engine's step
    for that bucket (``time_paired``: the machine's drift hits both alike), the dynamic engine still loaded."""
    how, why_not = static_form(cls, job.options)
    if how is None:
        return [], why_not
    if how == STATIC_COMPILE:
        _room_for_compiled_graphs(len(job.distribution.values))
    found = []
    scratch = Path(tempfile.mkdtemp(prefix="static-", dir=artifacts.cache_dir if artifacts.cache_dir else None))
    try:
        for value in job.distribution.values:
            try:
                found.append(_paired(job, cls, artifacts, how, value, inputs[value], dynamic_steps[value], scratch))
            except Exception as exc:  # one bucket that cannot be built does not hide the others
                found.append(StaticBucket(tuple(value), None, float("nan"), how, error=one_line(exc)))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return found, ""


def _room_for_compiled_graphs(buckets: int) -> None:
    """TorchDynamo keeps at most ``recompile_limit`` (8) graphs per code object and then runs it eagerly without
    failing: the dynamic engine's graph and one static graph per bucket (the same forward) must all fit."""
    import torch._dynamo.config as dynamo_config

    for name in ("recompile_limit", "cache_size_limit"):
        if hasattr(dynamo_config, name):
            setattr(dynamo_config, name, max(getattr(dynamo_config, name), 2 * buckets + 8))


def _paired(job, cls, artifacts, how: str, value, inputs: dict, dynamic_step, scratch: Path) -> StaticBucket:
    import numpy as np

    options = dict(job.options)
    shapes = {name: tuple(array.shape) for name, array in inputs.items()}
    if how == FIXED_GRAPH:
        graph = cls.graph_for(job.precision)
        artifacts = dataclasses.replace(
            artifacts, onnx_paths={**artifacts.onnx_paths, graph: fixed_graph(artifacts.onnx_for(graph), shapes, scratch)}
        )
    elif how == EXACT_PROFILE:
        config = exact_profile_config(artifacts.config, shapes)
        artifacts = dataclasses.replace(artifacts, config=config, cache_dir=Path(artifacts.cache_dir) / "static" / shape_tag(list(shapes.values())))
    elif how == STATIC_COMPILE:
        options["compile_shapes"] = "static"
    elif how == CUDA_GRAPH:
        options["cuda_graph"] = True
    with cls(artifacts, job.precision, options) as engine:
        before = compiled_graphs()
        engine.prepare(inputs)
        step = engine.make_step(inputs)
        step()  # compiles (a static graph) or captures, outside the timed region
        compiles = compiled_graphs() - before if how == STATIC_COMPILE and before is not None else None
        dynamic, static = time_paired(dynamic_step, step, job.run_length)
    return StaticBucket(tuple(value), float(np.median(static)) / 1e6, float(np.median(dynamic)) / 1e6, how, compiles=compiles)


def fixed_graph(onnx_path: Path, shapes: dict[str, tuple[int, ...]], folder: Path) -> Path:
    """A copy of the ONNX graph with every input dim fixed to ``shapes`` and the output shapes inferred."""
    import onnx
    from onnxruntime.tools.make_dynamic_shape_fixed import fix_output_shapes, make_input_shape_fixed

    model = onnx.load(str(onnx_path))
    for name, shape in shapes.items():
        make_input_shape_fixed(model.graph, name, list(shape))
    fix_output_shapes(model)
    path = Path(folder) / f"fixed_{shape_tag(list(shapes.values()))}.onnx"
    onnx.save(model, str(path))
    return path


def exact_profile_config(config, shapes: dict[str, tuple[int, ...]]):
    """``config`` with every input's TensorRT profile min = opt = max = its shape in ``shapes``."""
    inputs = tuple(dataclasses.replace(spec, optimization=ShapeProfile(shapes[spec.name], shapes[spec.name], shapes[spec.name]))
                   for spec in config.inputs)  # fmt: skip
    return dataclasses.replace(config, inputs=inputs)
