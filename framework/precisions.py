"""Every fact about a precision in one table: the agreement with PyTorch fp32 its outputs must reach, how
plots draw it, and which ONNX graph recipe makes it (``artifacts.graphs``).

The agreement thresholds (``measure.validity`` applies them):

- ``cosine_floor``: the direction of the outputs. Blind to scale: outputs at 0.5x the reference have cosine 1.
- ``relative_l2_ceiling`` = sqrt(2 (1 - cosine_floor)), derived, not a second knob: for outputs of equal norm,
  ||ref - got|| / ||ref|| = sqrt(2 (1 - cos)), so the ceiling lets through exactly the direction error the
  cosine floor allows, and a pure scale error only up to the same distance (outputs at s x the reference
  have relative L2 |1 - s|): fp32 1.4%, fp16 4.5%, int8 14%.
- ``tolerance`` and ``close_share_floor``: element by element, |got - ref| <= tolerance x RMS(ref) (the
  tolerance scaled to the output's own size, so logits and embeddings are judged alike), and at least
  ``close_share_floor`` (99%) of the elements must be that close: a few elements far off hide in a norm.
  The tolerance is 2.58 x the relative-L2 ceiling, derived too: noise-like errors exactly at the ceiling
  put 99% of the elements within it, so the share catches errors concentrated on a few elements, not
  errors the norm already allows (a tolerance of 0.1 RMS at int8 would refuse TensorRT int8 ResNets at
  cosine 0.995).
- ``top1_floor``: over the dataset, for class scores: the share of samples whose top class is PyTorch's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

NOISE_99 = 2.576  # |z| below which 99% of normal errors lie


@dataclass(frozen=True)
class Precision:
    name: str
    cosine_floor: float  # cosine similarity to PyTorch fp32 below which outputs are called wrong
    top1_floor: float  # top-1 agreement with PyTorch over the dataset (class scores)
    line_style: str  # plots: one colour per engine, precisions differ by line style ...
    marker: str  # ... by marker in scatter plots ...
    hatch: str  # ... and by hatching in box and bar plots

    @property
    def relative_l2_ceiling(self) -> float:
        """The relative L2 error the cosine floor allows for outputs of equal norm (see the module's text)."""
        return math.sqrt(2 * (1 - self.cosine_floor))

    @property
    def tolerance(self) -> float:
        """An element is close when |got - ref| <= tolerance * RMS(ref) (see the module's text)."""
        return NOISE_99 * self.relative_l2_ceiling

    close_share_floor: ClassVar[float] = 0.99  # at least this share of the elements must be close


PRECISIONS: dict[str, Precision] = {
    "fp32": Precision("fp32", 0.9999, 0.999, "-", "o", ""),
    "fp16": Precision("fp16", 0.999, 0.99, "--", "s", "//"),
    "int8": Precision("int8", 0.99, 0.95, ":", "D", "xx"),
}
_UNKNOWN = Precision("?", 0.99, 0.95, "-.", "^", "..")


def precision(name: str) -> Precision:
    """The precision called ``name``; an unknown one (from a foreign results folder) draws and judges like int8."""
    return PRECISIONS.get(name, _UNKNOWN)
