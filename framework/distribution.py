"""The shapes a model is served with: a weighted set of buckets over its dynamic dims.

Two sources. The config's optional top-level ``distribution`` (dims by name, each bucket a value of those dims
with a weight)::

    distribution:
      dims: [sequence]                 # dynamic dim names from the inputs' dims_names (not batch_size)
      buckets: {8: 30, 16: 25, 64: 5}  # one dim: value -> weight; any dims: [{shape: [224, 224], weight: 3}, ...]

or ``--shape-distribution FILE``: the shapes actually observed, one request per row, as CSV (a header naming
the dims, e.g. ``sequence``) or JSON (``{"dims": [...], "requests": [[12], [40], ...]}``, or a list of
``{"sequence": 12}`` objects). Each distinct shape is a bucket weighted by its count; a one-dim file with more
than ``MAX_BUCKETS`` distinct values is binned, each request rounded up to the next of ``MAX_BUCKETS``
quantile edges (a warning says so). Every mistake names the file and the field, or the row.

A bucket value fills every input dim of that name (minilm's ``input_ids`` and ``attention_mask`` share
``sequence``); the batch dim takes the run's batch size, and other dims keep the example's runtime shape.
"""

from __future__ import annotations

import csv
import io
import json
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from framework.config import BATCH_DIM_NAME, DYNAMIC, ModelConfig, NoAliasLoader
from framework.errors import ConfigError, DeployBenchError
from framework.shapes import default_preprocessed_shape

MAX_BUCKETS = 24
NEEDS_PROFILE = ("tensorrt", "onnxruntime-tensorrt")  # engines that refuse a shape outside the config's profile


@dataclass(frozen=True)
class ShapeDistribution:
    """Buckets (values of ``dims``, ascending) and their shares (summing to 1); ``source`` names where from."""

    dims: tuple[str, ...]
    values: tuple[tuple[int, ...], ...]
    weights: tuple[float, ...]
    source: str

    def runtime_shapes(self, config: ModelConfig, value: tuple[int, ...], batch_size: int) -> list[tuple[int, ...]]:
        """Each input's runtime shape for bucket ``value`` at ``batch_size``."""
        by_name = dict(zip(self.dims, value))
        shapes = []
        for spec in config.inputs:
            base = default_preprocessed_shape(spec.example, spec)
            shape = [by_name.get(name, base[i]) for i, name in enumerate(spec.dims_names)]
            if spec.batch_axis is not None:
                shape[spec.batch_axis] = batch_size
            shapes.append(tuple(shape))
        return shapes

    def to_json(self) -> dict:
        return {"dims": list(self.dims), "values": [list(v) for v in self.values], "weights": list(self.weights), "source": self.source}

    @classmethod
    def from_json(cls, data: dict) -> ShapeDistribution:
        return cls(tuple(data["dims"]), tuple(tuple(v) for v in data["values"]), tuple(data["weights"]), data["source"])


def config_distribution(config: ModelConfig) -> ShapeDistribution | None:
    """The config's ``distribution``, validated; None when it has none."""
    raw = yaml.load(Path(config.path).read_text(), Loader=NoAliasLoader)
    node = raw.get("distribution") if isinstance(raw, dict) else None
    if node is None:
        return None
    where = lambda field, problem: ConfigError(config.path, f"distribution{field}", problem)  # noqa: E731
    if not isinstance(node, dict):
        raise where("", f"expected a mapping with dims and buckets, got {type(node).__name__}")
    dims = _dims(config, node.get("dims", [node["dim"]] if "dim" in node else None), where)
    buckets = node.get("buckets")
    if isinstance(buckets, dict) and len(dims) == 1:
        pairs = [((_positive(k, where, f".buckets.{k}"),), _weight(w, where, f".buckets.{k}")) for k, w in buckets.items()]
    elif isinstance(buckets, list) and buckets:
        pairs = [_bucket(item, len(dims), where, f".buckets[{i}]") for i, item in enumerate(buckets)]
    else:
        raise where(".buckets", "expected a non-empty list of {shape: [...], weight: w} (or, for one dim, a mapping value: weight)")
    return _normalised(dims, pairs, f"{config.path}: distribution", where)


def file_distribution(path: Path, config: ModelConfig) -> ShapeDistribution:
    """``--shape-distribution FILE``: observed shapes, one request per row (CSV or JSON)."""
    path = Path(path)
    where = lambda field, problem: DeployBenchError(f"--shape-distribution {path}: {field}{': ' if field else ''}{problem}")  # noqa: E731
    try:
        text = path.read_text(encoding="utf-8-sig")  # a spreadsheet's export starts with a byte-order mark
    except (OSError, UnicodeDecodeError) as exc:
        raise where("", f"cannot read the file ({getattr(exc, 'strerror', None) or exc})") from None
    dims, rows = _json_rows(text, where) if path.suffix.lower() == ".json" else _csv_rows(text, where)
    dims = _dims(config, dims, where)
    requests = []
    for label, row in rows:
        if len(row) != len(dims):
            raise where(label, f"{len(row)} values, but the dims are {list(dims)}")
        requests.append(tuple(_positive(v, where, label) for v in row))
    if not requests:
        raise where("", "no requests: one row per observed request, e.g. a column 'sequence'")
    values, counts = np.unique(np.array(requests), axis=0, return_counts=True)
    pairs = [(tuple(int(d) for d in v), float(c)) for v, c in zip(values, counts)]
    if len(pairs) > MAX_BUCKETS:
        pairs = _binned(pairs, dims, path)
    return _normalised(dims, pairs, str(path), where)


def _dims(config: ModelConfig, dims: Any, where) -> tuple[str, ...]:
    if not isinstance(dims, (list, tuple)) or not dims or not all(isinstance(d, str) for d in dims):
        raise where(".dims", f"expected a list of dim names, got {dims!r}")
    dynamic = {name for spec in config.inputs for i, name in enumerate(spec.dims_names) if spec.runtime[i] == DYNAMIC}
    for i, name in enumerate(dims):
        if name == BATCH_DIM_NAME:
            raise where(f".dims[{i}]", "batch_size is the run's --batch-sizes, not part of a shape distribution")
        if not dynamic - {BATCH_DIM_NAME}:
            raise where(f".dims[{i}]", f"{config.path} has no dynamic dim besides batch_size (-1 in an input's runtime): a shape "
                                       "mix does not apply; --batch-sizes measures batches")  # fmt: skip
        if name not in dynamic:
            raise where(f".dims[{i}]", f"{name!r} is not a dynamic dim of any input (dynamic: {sorted(dynamic - {BATCH_DIM_NAME})})")
    if len(set(dims)) != len(dims):
        raise where(".dims", f"names must be unique, got {list(dims)}")
    return tuple(dims)


def _positive(value: Any, where, field: str) -> int:
    try:
        number = int(value) if not isinstance(value, bool) and float(value) == int(float(value)) else None
    except (TypeError, ValueError, OverflowError):
        number = None
    if number is None or number < 1:
        raise where(field, f"expected a positive whole number, got {value!r}")
    return number


def _weight(value: Any, where, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise where(field, f"weight must be a finite number >= 0, got {value!r}")
    return float(value)


def _bucket(item: Any, rank: int, where, field: str) -> tuple[tuple[int, ...], float]:
    if not isinstance(item, dict) or "shape" not in item or "weight" not in item:
        raise where(field, f"expected {{shape: [...], weight: w}}, got {item!r}")
    shape = item["shape"] if isinstance(item["shape"], list) else [item["shape"]]
    if len(shape) != rank:
        raise where(f"{field}.shape", f"{len(shape)} values, but dims has {rank}")
    return tuple(_positive(v, where, f"{field}.shape[{i}]") for i, v in enumerate(shape)), _weight(item["weight"], where, f"{field}.weight")


def _normalised(dims: tuple[str, ...], pairs: list, source: str, where) -> ShapeDistribution:
    merged: dict[tuple[int, ...], float] = {}
    for value, weight in pairs:
        if value in merged:
            raise where(".buckets", f"bucket {list(value)} is given twice")
        merged[value] = weight
    total = sum(merged.values())
    if total <= 0:
        raise where(".buckets", "the weights sum to 0")
    values = sorted(merged, key=lambda v: (math.prod(v), v))
    return ShapeDistribution(dims, tuple(values), tuple(merged[v] / total for v in values), source)


def _csv_rows(text: str, where) -> tuple[list[str], list]:
    reader = csv.reader(io.StringIO(text))
    rows = [(reader.line_num, r) for r in reader if any(c.strip() for c in r)]  # the file's line, blank lines counted
    if not rows:
        raise where("", "empty file: a header naming the dims (e.g. sequence), then one row per request")
    header = [c.strip() for c in rows[0][1]]
    return header, [(f"row {line}", [c.strip() for c in r]) for line, r in rows[1:]]


def _json_rows(text: str, where) -> tuple[Any, list]:
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise where("", f"not valid JSON ({exc})") from None
    if isinstance(data, dict):
        requests = data.get("requests")
        if not isinstance(requests, list):
            raise where("requests", "expected a list of shapes, one per request")
        return data.get("dims"), [(f"requests[{i}]", r if isinstance(r, list) else [r]) for i, r in enumerate(requests)]
    if isinstance(data, list) and data and all(isinstance(r, dict) for r in data):
        dims = list(data[0])
        for i, r in enumerate(data):
            if list(r) != dims:
                raise where(f"[{i}]", f"keys {list(r)} differ from the first request's {dims}")
        return dims, [(f"[{i}]", list(r.values())) for i, r in enumerate(data)]
    raise where("", 'expected {"dims": [...], "requests": [[...], ...]} or a list of {"<dim>": value} objects')


def _binned(pairs: list, dims: tuple[str, ...], path: Path) -> list:
    """Many distinct values of one dim: round each up to the next of MAX_BUCKETS quantile edges."""
    if len(dims) != 1:
        raise DeployBenchError(f"--shape-distribution {path}: {len(pairs)} distinct shapes over {len(dims)} dims; at most {MAX_BUCKETS} "
                               "can be measured: round them to fewer shapes first")  # fmt: skip
    values = np.repeat([v[0] for v, _ in pairs], [int(c) for _, c in pairs])
    edges = sorted({int(np.ceil(q)) for q in np.quantile(values, np.linspace(0, 1, MAX_BUCKETS + 1)[1:])})
    binned: dict[tuple[int, ...], float] = {}
    for (value,), count in pairs:
        edge = next(e for e in edges if e >= value)
        binned[(edge,)] = binned.get((edge,), 0.0) + count
    warnings.warn(f"--shape-distribution {path}: {len(pairs)} distinct values of {dims[0]}; binned into {len(binned)} buckets, "
                  "each request measured at its bucket's upper edge", stacklevel=3)  # fmt: skip
    return list(binned.items())


def check_profile(distribution: ShapeDistribution, config: ModelConfig, engines: list[str], batch_size: int) -> None:
    """Buckets outside an input's TensorRT profile (``optimization``): an error for engines that need the
    profile (``NEEDS_PROFILE``), a warning otherwise (the others run any shape, but a TensorRT run would not)."""
    problems = []
    for value in distribution.values:
        for i, (spec, shape) in enumerate(zip(config.inputs, distribution.runtime_shapes(config, value, batch_size))):
            profile = spec.optimization
            if profile is None:
                continue
            for axis, (low, got, high) in enumerate(zip(profile.min, shape, profile.max)):
                if not low <= got <= high:
                    problems.append(f"bucket {list(value)} gives input {spec.name!r} dim {axis} ({spec.dims_names[axis]}) = {got}, "
                                    f"outside {low}..{high} of {config.path}: inputs[{i}].shapes.optimization")  # fmt: skip
    if not problems:
        return
    strict = [e for e in engines if e in NEEDS_PROFILE]
    text = f"{distribution.source}: " + "; ".join(problems)
    if strict:
        raise DeployBenchError(f"{text} ({', '.join(strict)} cannot run shapes outside the profile)")
    warnings.warn(f"{text} (measured anyway: these engines need no profile)", stacklevel=2)


def warn_outside_profile(config: ModelConfig, shapes_list: list, engines: list[str], loader_class: type | None = None) -> None:
    """``--shapes`` values whose runtime shape (default preprocessing) leaves an input's TensorRT profile (batch
    aside): a warning naming the value and the config field, unless a TensorRT engine runs (it refuses them
    itself, naming the same field) or the loader preprocesses in its own way (the shape is then not known here)."""
    from framework.shapes import keeps_default_preprocess

    if any(e in NEEDS_PROFILE for e in engines) or (loader_class is not None and not keeps_default_preprocess(loader_class)):
        return
    for shapes in shapes_list:
        if shapes is None or len(shapes) != len(config.inputs):
            continue
        for i, (spec, shape) in enumerate(zip(config.inputs, shapes)):
            runtime, profile = default_preprocessed_shape(tuple(shape), spec), spec.optimization
            if profile is None or len(runtime) != len(profile.min):
                continue
            limits = zip(profile.min, runtime, profile.max)
            outside = [f"dim {a} ({spec.dims_names[a]}) = {got} outside {lo}..{hi}" for a, (lo, got, hi) in enumerate(limits)
                       if not lo <= got <= hi and a != spec.batch_axis]  # fmt: skip
            if outside:
                warnings.warn(f"--shapes {list(map(tuple, shapes))}: input {spec.name!r} {', '.join(outside)} of {config.path}: "
                              f"inputs[{i}].shapes.optimization (measured anyway: these engines need no profile; TensorRT would refuse it)",
                              stacklevel=2)  # fmt: skip
