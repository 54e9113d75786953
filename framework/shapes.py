"""Parse the example shapes users type (``"[(224,224,3)]"``, one tuple per model input) and name them."""

from __future__ import annotations

import ast

from framework.config import InputSpec, ModelConfig
from framework.errors import DeployBenchError


def parse_example_shapes(text: str) -> list[tuple[int, ...]]:
    """``"[(224,224,3)]"`` -> ``[(224, 224, 3)]``; a bare ``"(224,224,3)"`` is taken as one input."""
    try:
        value = ast.literal_eval(text.strip())
    except (ValueError, SyntaxError) as exc:
        raise DeployBenchError(f'example shapes {text!r}: not a Python literal like "[(224,224,3)]"') from exc
    if isinstance(value, tuple) and all(isinstance(d, int) for d in value):
        value = [value]
    if not isinstance(value, (list, tuple)) or not value:
        raise DeployBenchError(f"example shapes {text!r}: expected a list of tuples, one per model input")
    shapes = []
    for shape in value:
        if not isinstance(shape, (list, tuple)) or not shape or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in shape):
            raise DeployBenchError(f"example shapes {text!r}: {shape!r} is not a tuple of positive integers")
        shapes.append(tuple(shape))
    return shapes


def shape_tag(shapes: list[tuple[int, ...]]) -> str:
    """Folder name for one example-shape experiment: ``224x224x3``, inputs joined by ``_``."""
    return "_".join("x".join(str(d) for d in shape) for shape in shapes)


def check_example_shapes(config: ModelConfig, shapes_list: list[list[tuple[int, ...]] | None], loader_class: type | None = None) -> None:
    """Refuse ``--shapes`` values the model cannot run, before anything runs, blaming ``--shapes`` (not config.yaml).

    ``shapes_list`` holds one parsed ``--shapes`` value per measurement (None: the config's own example, not
    checked here). Every problem of every value is named in one DeployBenchError. Checked: one shape per
    input; then, only when ``loader_class`` (None: the base ModelLoader) keeps the default ``preprocess`` and
    ``runtime_inputs``, what the default rule (``framework.loader.default_preprocess``) guarantees: the example
    has the runtime's rank, or one dim less (the batch dim is then added, after HWC->CHW for 3-D images), and
    the resulting shape keeps every dim the runtime fixes. A plugin's own ``preprocess`` may turn an example
    into a runtime tensor of any rank and size (tokenise, resize, stack), so for it nothing beyond the count
    can be known before it runs: its ``runtime_inputs`` check judges the rest when the experiment runs.
    """
    default = loader_class is None or keeps_default_preprocess(loader_class)
    problems = []
    for shapes in shapes_list:
        if shapes is None:
            continue
        text = "[" + ", ".join(str(tuple(s)) for s in shapes) + "]"
        problems += [f"--shapes {text!r}: {problem}" for problem in _value_problems(config, shapes, default)]
    if problems:
        raise DeployBenchError("; ".join(problems))


def keeps_default_preprocess(loader_class: type) -> bool:
    from framework.loader import ModelLoader

    return loader_class.preprocess is ModelLoader.preprocess and loader_class.runtime_inputs is ModelLoader.runtime_inputs


def _value_problems(config: ModelConfig, shapes: list[tuple[int, ...]], default: bool) -> list[str]:
    if len(shapes) != len(config.inputs):
        names = ", ".join(repr(n) for n in config.input_names)
        return [f"{len(shapes)} shapes given, but model {config.name!r} has {len(config.inputs)} inputs ({names}): one tuple per input, in order"]
    if not default:
        return []
    found = [(spec.name, example_shape_problem(spec, tuple(shape))) for spec, shape in zip(config.inputs, shapes)]
    return [f"input {name!r}: {problem}" for name, problem in found if problem]


def example_shape_problem(spec: InputSpec, shape: tuple[int, ...]) -> str | None:
    """Why the default preprocessing cannot turn an example of ``shape`` into a runtime tensor of ``spec``, or None."""
    rank = len(spec.runtime)
    if len(shape) not in (rank, rank - 1):
        allowed = f"{rank} dims, or {rank - 1} (the batch dim is then added)" if rank > 1 else f"{rank} dim"
        return f"{shape} has {len(shape)} dims, but runtime {list(spec.runtime)} has {rank}: give {allowed}"
    after = default_preprocessed_shape(shape, spec)
    problem = spec.accepts(after)
    if problem is None:
        return None
    if len(shape) == rank:
        return f"{shape}: {problem}"
    how = "HWC->CHW, batch dim added" if _hwc_to_chw(shape, spec) else "batch dim added"
    return f"{shape} becomes {after} after the default preprocessing ({how}): {problem}"


def default_preprocessed_shape(shape: tuple[int, ...], spec: InputSpec) -> tuple[int, ...]:
    """The shape ``framework.loader.default_preprocess`` gives an example of ``shape``, computed without data
    (the same rule: HWC->CHW for a 3-D image the runtime wants as 4-D NCHW, then the batch dim inserted)."""
    rank = len(spec.runtime)
    if len(shape) != rank - 1:
        return tuple(shape)
    if _hwc_to_chw(shape, spec):
        shape = (shape[2], shape[0], shape[1])
    axis = spec.batch_axis if spec.batch_axis is not None else 0
    return (*shape[:axis], 1, *shape[axis:])


def _hwc_to_chw(shape: tuple[int, ...], spec: InputSpec) -> bool:
    return len(shape) == 3 and len(spec.runtime) == 4 and shape[-1] in (1, 3, 4) and spec.runtime[1] in (shape[-1], -1)
