"""Which nodes to keep in float: rank them by sensitivity, then exclude as few as possible until the floor holds.

Sensitivity is measured one node at a time: the graph with only that node converted (quantized, or fp16),
run on the calibration set, against the fp32 graph there; its loss is 1 - cosine similarity. The most
sensitive nodes are excluded first. How many: the smallest count k whose graph (the k most sensitive nodes
kept in float) passes on the calibration set, found by galloping (1, 2, 4, ...) then bisecting between the
last count that failed and the first that passed, so a model that needs one exclusion costs one build, and
one that needs k costs about 2 log2 k. It assumes that excluding more of the ranking never hurts, which
holds when the errors add up; the final judgement is the measured result on held-out data, not this.

Both loops are pure: the caller gives the build-and-evaluate callables and a deadline, so they are tested on
constructed graphs and bounded by ``--search-budget``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Ranking:
    """Nodes, most sensitive first, with the loss (1 - cosine) of converting each alone; ``complete`` False
    when the deadline stopped the ranking (the nodes not reached follow, unranked, in graph order)."""

    nodes: tuple[str, ...]
    losses: tuple[float | None, ...]
    complete: bool

    def to_dict(self) -> dict:
        return {"nodes": list(self.nodes), "losses": list(self.losses), "complete": self.complete}

    @classmethod
    def from_dict(cls, data: dict) -> Ranking:
        return cls(tuple(data["nodes"]), tuple(data["losses"]), data["complete"])


@dataclass(frozen=True)
class Probe:
    """One tried exclusion: the nodes kept in float and whether the graph passed on the calibration set."""

    excluded: tuple[str, ...]
    passed: bool
    figures: dict  # the calibration set's agreement: cosine, relative L2, share within tolerance


def rank_nodes(candidates: list[str], loss_alone: Callable[[str], float], deadline: float) -> Ranking:
    """Rank ``candidates`` by ``loss_alone(node)`` (the loss with only that node converted), highest first,
    until ``time.monotonic()`` passes ``deadline``."""
    losses: dict[str, float] = {}
    for node in candidates:
        if time.monotonic() > deadline:
            break
        losses[node] = loss_alone(node)
    ranked = sorted(losses, key=lambda n: -losses[n])  # stable: ties keep graph order
    rest = [n for n in candidates if n not in losses]
    return Ranking(tuple(ranked + rest), tuple([losses[n] for n in ranked] + [None] * len(rest)), not rest)


def fewest_exclusions(order: tuple[str, ...], probe: Callable[[tuple[str, ...]], Probe], deadline: float) -> tuple[Probe | None, list[Probe]]:
    """The smallest prefix of ``order`` whose exclusion passes (``probe(prefix)``), and every probe made, in
    order. None when no prefix tried passed before the deadline (the whole list is tried last)."""
    probes: list[Probe] = []
    failed, passed = 0, None  # the largest count known to fail, the smallest known to pass
    count = 1
    while count <= len(order) and time.monotonic() <= deadline:
        probes.append(probe(order[:count]))
        if probes[-1].passed:
            passed = count
            break
        failed = count
        count = len(order) if count == len(order) else min(2 * count, len(order))
        if failed == len(order):
            break
    while passed is not None and passed - failed > 1 and time.monotonic() <= deadline:
        middle = (failed + passed) // 2
        probes.append(probe(order[:middle]))
        failed, passed = (failed, middle) if probes[-1].passed else (middle, passed)
    best = next((p for p in probes if p.passed and len(p.excluded) == passed), None) if passed is not None else None
    return best, probes
