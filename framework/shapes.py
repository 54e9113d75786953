"""Parse the example shapes users type (``"[(224,224,3)]"``, one tuple per model input) and name them."""

from __future__ import annotations

import ast

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
