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
from framework.measure.shape_mix import compiled_graphs
from framework.measure.timing import time_host
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


def static_buckets(job, cls, artifacts, inputs: dict, dynamic_ms: list[float]) -> tuple[list[StaticBucket], str]:
    """Per bucket, a fresh engine specialised to its shape, timed like the dynamic engine's bucket."""
    how, why_not = static_form(cls, job.options)
    if how is None:
        return [], why_not
    found = []
    scratch = Path(tempfile.mkdtemp(prefix="static-", dir=artifacts.cache_dir if artifacts.cache_dir else None))
    try:
        for value, dynamic in zip(job.distribution.values, dynamic_ms):
            try:
                before = compiled_graphs()
                static = _time_static(job, cls, artifacts, how, inputs[value], scratch)
                compiles = compiled_graphs() - before if how == STATIC_COMPILE and before is not None else None
                found.append(StaticBucket(tuple(value), static, dynamic, how, compiles=compiles))
            except Exception as exc:  # one bucket that cannot be built does not hide the others
                found.append(StaticBucket(tuple(value), None, dynamic, how, error=one_line(exc)))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return found, ""


def _time_static(job, cls, artifacts, how: str, inputs: dict, scratch: Path) -> float:
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
        import torch

        # A fresh compile per bucket, as in a fresh process: each engine's module is new, and TorchDynamo's cache
        # per code object (limit 8 entries) would otherwise fill up and fall back to eager without failing.
        torch._dynamo.reset()
        options["compile_shapes"] = "static"
    elif how == CUDA_GRAPH:
        options["cuda_graph"] = True
    with cls(artifacts, job.precision, options) as engine:
        engine.prepare(inputs)
        step = engine.make_step(inputs)
        run_length = dict(job.run_length)
        timing = time_host(step, run_length.pop("iterations", None), run_length.pop("warmup", 3), **run_length)
    return float(np.median(timing.latencies_ns)) / 1e6


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
