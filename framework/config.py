"""Read a model's config.yaml into typed, validated objects.

Every mistake raises ConfigError naming the file, the field path (e.g. ``inputs[0].shapes.runtime``) and
what is wrong, so a user can fix the file without reading this code. Unknown keys are ignored so that
existing configs with extra notes keep working.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from framework.errors import ConfigError

DTYPES = {
    "float32": np.float32,
    "float16": np.float16,
    "float64": np.float64,
    "int8": np.int8,
    "uint8": np.uint8,
    "int32": np.int32,
    "int64": np.int64,
    "bool": np.bool_,
}
DYNAMIC = -1
BATCH_DIM_NAME = "batch_size"
# Model names become folder names under measurements_results/: keep them to a safe alphabet.
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class ShapeProfile:
    """TensorRT optimization profile of one input: the smallest, most typical and largest shapes."""

    min: tuple[int, ...]
    opt: tuple[int, ...]
    max: tuple[int, ...]


@dataclass(frozen=True)
class InputSpec:
    name: str
    dtype_str: str
    dims_names: tuple[str, ...]
    example: tuple[int, ...]  # shape of the loader's example input, before preprocessing
    runtime: tuple[int, ...]  # shape the model sees; -1 marks a dynamic dim
    optimization: ShapeProfile | None

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(DTYPES[self.dtype_str])

    @property
    def dynamic_axes(self) -> dict[int, str]:
        return {i: self.dims_names[i] for i, d in enumerate(self.runtime) if d == DYNAMIC}

    @property
    def batch_axis(self) -> int | None:
        """Index of the dim named ``batch_size``, where batches are stacked; None if the model has none."""
        return self.dims_names.index(BATCH_DIM_NAME) if BATCH_DIM_NAME in self.dims_names else None

    def accepts(self, shape: tuple[int, ...]) -> str | None:
        """Why ``shape`` does not fit the runtime shape, or None if it fits."""
        if len(shape) != len(self.runtime):
            return f"{len(shape)} dims, but runtime {list(self.runtime)} has {len(self.runtime)}"
        for i, (got, want) in enumerate(zip(shape, self.runtime)):
            if want not in (DYNAMIC, got):
                return f"dim {i} ({self.dims_names[i]}) is {got}, but runtime fixes it to {want}"
        return None


@dataclass(frozen=True)
class OutputSpec:
    name: str
    runtime: tuple[int, ...]
    dims_names: tuple[str, ...]


@dataclass(frozen=True)
class ModelConfig:
    name: str
    inputs: tuple[InputSpec, ...]
    outputs: tuple[OutputSpec, ...]
    path: Path

    @property
    def input_names(self) -> list[str]:
        return [i.name for i in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [o.name for o in self.outputs]

    def output_dynamic_axes(self, output: OutputSpec) -> dict[int, str]:
        """Output dims that vary: -1 in the config, or named like a dynamic input dim (e.g. batch_size)."""
        dynamic_names = {n for spec in self.inputs for n in spec.dynamic_axes.values()}
        return {i: name for i, (dim, name) in enumerate(zip(output.runtime, output.dims_names)) if dim == DYNAMIC or name in dynamic_names}


def load_config(path: str | Path) -> ModelConfig:
    """Parse and validate ``path``; raise ConfigError on the first problem found."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(path, "", f"cannot read file ({exc.strerror or exc})") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(path, "", f"not UTF-8 text (byte {exc.start}: {exc.reason})") from None
    try:
        raw = yaml.load(text, Loader=NoAliasLoader)  # a SafeLoader that also refuses aliases
    except AliasRefused as exc:
        raise ConfigError(path, "", f"line {exc.line}: YAML aliases (&/*) are not allowed; write the values out") from None
    except RecursionError:
        raise ConfigError(path, "", "not valid YAML: nested too deeply") from None
    except yaml.YAMLError as exc:
        raise ConfigError(path, "", f"not valid YAML: {' '.join(str(exc).split())}") from exc
    return _Validator(path).config(raw)


class AliasRefused(yaml.YAMLError):
    def __init__(self, line: int) -> None:
        super().__init__(f"line {line}: YAML alias or anchor")
        self.line = line


class NoAliasLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses anchors (``&a``) and aliases (``*a``) as it meets them.

    Aliases let a few hundred bytes stand for billions of values ("billion laughs"): building, printing or
    walking them exhausts memory. A config needs none, so the first anchor or alias ends the load at once.
    """

    def compose_node(self, parent, index):
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            raise AliasRefused(event.start_mark.line + 1)
        return super().compose_node(parent, index)


class _Validator:
    """Walks the raw YAML; each method validates one node and knows its own field path."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, field: str, problem: str) -> ConfigError:
        return ConfigError(self.path, field, problem)

    def mapping(self, value: Any, field: str) -> dict:
        if not isinstance(value, dict):
            raise self.fail(field, f"expected a mapping, got {_kind(value)}")
        return value

    def get(self, node: dict, key: str, field: str) -> Any:
        if key not in node or node[key] is None:
            raise self.fail(f"{field}.{key}" if field else key, "missing required field")
        return node[key]

    def string(self, value: Any, field: str) -> str:
        if not isinstance(value, str) or not value.strip():
            raise self.fail(field, f"expected a non-empty string, got {_kind(value)}")
        return value

    def dims(self, value: Any, field: str, allow_dynamic: bool) -> tuple[int, ...]:
        if not isinstance(value, (list, tuple)) or not value:
            raise self.fail(field, f"expected a non-empty list of integers, got {_kind(value)}")
        dims = []
        for i, d in enumerate(value):
            ok = isinstance(d, int) and not isinstance(d, bool) and (d >= 1 or (allow_dynamic and d == DYNAMIC))
            if not ok:
                allowed = "a positive integer or -1 (dynamic)" if allow_dynamic else "a positive integer"
                raise self.fail(f"{field}[{i}]", f"expected {allowed}, got {d!r}")
            dims.append(d)
        return tuple(dims)

    def names(self, value: Any, field: str) -> tuple[str, ...]:
        if not isinstance(value, (list, tuple)) or not value:
            raise self.fail(field, f"expected a non-empty list of names, got {_kind(value)}")
        for i, n in enumerate(value):
            self.string(n, f"{field}[{i}]")
        if len(set(value)) != len(value):
            raise self.fail(field, f"names must be unique, got {list(value)}")
        return tuple(value)

    def config(self, raw: Any) -> ModelConfig:
        root = self.mapping(raw, "(top level)") if raw is not None else None
        if root is None:
            raise self.fail("", "file is empty")
        name = self.string(self.get(root, "name", ""), "name")
        if not SAFE_NAME.match(name):
            raise self.fail("name", f"{name!r} may only contain letters, digits, '_', '.', '-' and must not start with '.'")
        inputs = self.entries(self.get(root, "inputs", ""), "inputs", self.input_spec)
        outputs = self.entries(self.get(root, "outputs", ""), "outputs", self.output_spec)
        clash = set(i.name for i in inputs) & set(o.name for o in outputs)
        if clash:
            raise self.fail("outputs", f"names {sorted(clash)} are also input names")
        return ModelConfig(name=name, inputs=tuple(inputs), outputs=tuple(outputs), path=self.path)

    def entries(self, value: Any, field: str, parse) -> list:
        if not isinstance(value, list) or not value:
            raise self.fail(field, f"expected a non-empty list, got {_kind(value)}")
        parsed, seen = [], {}
        for i, node in enumerate(value):
            item = parse(self.mapping(node, f"{field}[{i}]"), f"{field}[{i}]")
            if item.name in seen:
                raise self.fail(f"{field}[{i}].name", f"duplicate name {item.name!r} (also {field}[{seen[item.name]}])")
            seen[item.name] = i
            parsed.append(item)
        return parsed

    def input_spec(self, node: dict, field: str) -> InputSpec:
        name = self.string(self.get(node, "name", field), f"{field}.name")
        dtype_str = self.get(node, "dtype_str", field)
        if dtype_str not in DTYPES:
            raise self.fail(f"{field}.dtype_str", f"unknown dtype {dtype_str!r}; allowed: {', '.join(DTYPES)}")
        shapes_field = f"{field}.shapes"
        shapes = self.mapping(self.get(node, "shapes", field), shapes_field)
        dims_names = self.names(self.get(shapes, "dims_names", shapes_field), f"{shapes_field}.dims_names")
        example = self.dims(self.get(shapes, "example", shapes_field), f"{shapes_field}.example", allow_dynamic=False)
        runtime = self.dims(self.get(shapes, "runtime", shapes_field), f"{shapes_field}.runtime", allow_dynamic=True)
        if len(dims_names) != len(runtime):
            raise self.fail(f"{shapes_field}.dims_names", f"{len(dims_names)} names, but runtime has {len(runtime)} dims")
        optimization = None
        if shapes.get("optimization") is not None:
            optimization = self.profile(shapes["optimization"], f"{shapes_field}.optimization", runtime, dims_names)
        return InputSpec(name, dtype_str, dims_names, example, runtime, optimization)

    def profile(self, value: Any, field: str, runtime: tuple[int, ...], dims_names: tuple[str, ...]) -> ShapeProfile:
        node = self.mapping(value, field)
        shapes = {}
        for key in ("min", "opt", "max"):
            dims = self.dims(self.get(node, key, field), f"{field}.{key}", allow_dynamic=False)
            if len(dims) != len(runtime):
                raise self.fail(f"{field}.{key}", f"{len(dims)} dims, but runtime has {len(runtime)}")
            for i, (d, r) in enumerate(zip(dims, runtime)):
                if r not in (DYNAMIC, d):
                    raise self.fail(f"{field}.{key}[{i}]", f"is {d}, but runtime fixes dim {i} ({dims_names[i]}) to {r}")
            shapes[key] = dims
        for i in range(len(runtime)):
            lo, mid, hi = shapes["min"][i], shapes["opt"][i], shapes["max"][i]
            if not lo <= mid <= hi:
                raise self.fail(field, f"dim {i} ({dims_names[i]}) needs min <= opt <= max, got {lo}, {mid}, {hi}")
        return ShapeProfile(shapes["min"], shapes["opt"], shapes["max"])

    def output_spec(self, node: dict, field: str) -> OutputSpec:
        name = self.string(self.get(node, "name", field), f"{field}.name")
        shape_field = f"{field}.shape"
        shape = self.mapping(self.get(node, "shape", field), shape_field)
        runtime = self.dims(self.get(shape, "runtime", shape_field), f"{shape_field}.runtime", allow_dynamic=True)
        dims_names = self.names(self.get(shape, "dims_names", shape_field), f"{shape_field}.dims_names")
        if len(dims_names) != len(runtime):
            raise self.fail(f"{shape_field}.dims_names", f"{len(dims_names)} names, but runtime has {len(runtime)} dims")
        return OutputSpec(name, runtime, dims_names)


def _kind(value: Any) -> str:
    return "nothing" if value is None else f"{type(value).__name__} {value!r}"[:80]
