"""Every fact about a precision in one table: the cosine floor its outputs must reach, how plots draw it,
and which ONNX graph recipe makes it (``artifacts.graphs``)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Precision:
    name: str
    cosine_floor: float  # cosine similarity to PyTorch fp32 below which outputs are called wrong
    line_style: str  # plots: one colour per engine, precisions differ by line style ...
    marker: str  # ... by marker in scatter plots ...
    hatch: str  # ... and by hatching in box and bar plots


PRECISIONS: dict[str, Precision] = {
    "fp32": Precision("fp32", 0.9999, "-", "o", ""),
    "fp16": Precision("fp16", 0.999, "--", "s", "//"),
    "int8": Precision("int8", 0.99, ":", "D", "xx"),
}
_UNKNOWN = Precision("?", 0.99, "-.", "^", "..")


def precision(name: str) -> Precision:
    """The precision called ``name``; an unknown one (from a foreign results folder) draws and judges like int8."""
    return PRECISIONS.get(name, _UNKNOWN)
