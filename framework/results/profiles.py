"""Recommendations from measured per-bucket latencies and a shape distribution: pure functions, no measuring.

Buckets are given in ascending order of size (``ShapeDistribution.values``: by the product of their dims), with
their shares (``weights``, summing to 1) and one measured latency each.

- ``expected_latency``: the mean latency a request sees under the distribution, sum(weight x latency).
- ``recommend_profiles``: TensorRT profiles (K = 1, 2, 3) splitting the sorted buckets into K contiguous groups
  (dynamic programming over the split points), each with min = its smallest bucket (one dim: the previous
  profile's max + 1, so a length between two profiles' buckets is still served), max = its largest and opt
  = the bucket minimising the group's expected latency. The latency model, stated because TensorRT could not be
  measured with every candidate profile: a bucket runs at its measured latency times
  ``1 + opt_penalty x |log2(size / opt size)|`` (TensorRT tunes its kernels for opt; shapes far from it lose a
  share per doubling). With ``opt_penalty`` 0 every split is equally good and one profile suffices.
- ``padding_choices``: pad the dynamic dim up to a multiple of M, or to the nearest of B bucket sizes (B chosen
  by the same dynamic programming); each with its expected latency, a padded size that was not measured read
  off the measured curve by linear interpolation over size, past the largest bucket extrapolated along its last
  segment (``interpolated`` says so).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

DEFAULT_OPT_PENALTY = 0.05  # 5% per doubling of size away from opt
PAD_MULTIPLES = (8, 16, 32, 64)

Value = tuple[int, ...]


@dataclass(frozen=True)
class Profile:
    min: Value
    opt: Value
    max: Value
    buckets: tuple[Value, ...]
    expected_ms: float  # this group's share of the expected latency (weights not renormalised)


@dataclass(frozen=True)
class ProfileSplit:
    profiles: tuple[Profile, ...]
    expected_ms: float  # expected latency of a request under the latency model


@dataclass(frozen=True)
class Padding:
    """One padding rule: each bucket mapped to the size it is run at."""

    label: str  # "none", "multiple of 32", "nearest of 64, 256"
    targets: tuple[Value, ...]  # per bucket, the padded value
    expected_ms: float
    interpolated: bool  # some padded size was not measured: its latency is interpolated


def size(value: Sequence[int]) -> int:
    return math.prod(value)


def expected_latency(weights: Sequence[float], latencies_ms: Sequence[float]) -> float:
    """The mean latency of a request: the weighted mean of the buckets' latencies (weights normalised)."""
    total = float(sum(weights))
    return float(sum(w * latency for w, latency in zip(weights, latencies_ms))) / total


def best_partition(n: int, k: int, cost: Callable[[int, int], float]) -> tuple[float, list[tuple[int, int]]]:
    """Split items 0..n-1 into exactly ``k`` (<= n) contiguous non-empty groups [i, j) minimising the summed
    ``cost(i, j)``: dynamic programming over the split points, O(k n^2) calls of ``cost``."""
    if not 1 <= k <= n:
        raise ValueError(f"cannot split {n} buckets into {k} groups")
    best = [[math.inf] * (n + 1) for _ in range(k + 1)]
    split = [[0] * (n + 1) for _ in range(k + 1)]
    best[0][0] = 0.0
    for groups in range(1, k + 1):
        for end in range(groups, n + 1):
            for start in range(groups - 1, end):
                candidate = best[groups - 1][start] + cost(start, end)
                if candidate < best[groups][end]:
                    best[groups][end], split[groups][end] = candidate, start
    bounds, end = [], n
    for groups in range(k, 0, -1):
        bounds.append((split[groups][end], end))
        end = split[groups][end]
    return best[k][n], bounds[::-1]


def profile_latency(latency_ms: float, value: Value, opt: Value, opt_penalty: float) -> float:
    """The latency model: a bucket in a profile tuned for ``opt``."""
    return latency_ms * (1 + opt_penalty * abs(math.log2(size(value) / size(opt))))


def recommend_profiles(values: Sequence[Value], weights: Sequence[float], latencies_ms: Sequence[float], k: int,
                       opt_penalty: float = DEFAULT_OPT_PENALTY) -> ProfileSplit:  # fmt: skip
    """The best split of the buckets into exactly ``k`` profiles (fewer when there are fewer buckets)."""
    total = float(sum(weights))

    def group(start: int, end: int) -> tuple[float, int]:
        costs = [sum(weights[i] * profile_latency(latencies_ms[i], values[i], values[o], opt_penalty) for i in range(start, end)) / total
                 for o in range(start, end)]  # fmt: skip
        best = int(np.argmin(costs))
        return costs[best], start + best

    k = min(k, len(values))
    best, bounds = best_partition(len(values), k, lambda i, j: group(i, j)[0])
    profiles = []
    for start, end in bounds:
        cost, opt = group(start, end)
        members = tuple(values[start:end])
        low = tuple(min(v[d] for v in members) for d in range(len(members[0])))
        high = tuple(max(v[d] for v in members) for d in range(len(members[0])))
        if profiles and len(low) == 1:  # one dim: no gap between profiles (lengths never observed still get an engine)
            low = (profiles[-1].max[0] + 1,)
        profiles.append(Profile(low, values[opt], high, members, cost))
    return ProfileSplit(tuple(profiles), best)


def latency_at(value: Value, values: Sequence[Value], latencies_ms: Sequence[float]) -> tuple[float, bool]:
    """The measured latency of ``value``, else the measured curve's (linear over size), and whether estimated. Past
    the largest bucket (padding up to a multiple can overshoot it) the line through the two largest buckets goes on,
    never below the largest bucket's latency (one bucket: latency proportional to size): held flat there, a padded
    size would look as cheap as the largest bucket however much larger it is."""
    if tuple(value) in [tuple(v) for v in values]:
        return float(latencies_ms[[tuple(v) for v in values].index(tuple(value))]), False
    sizes, target = [size(v) for v in values], size(value)
    if target <= max(sizes):
        return float(np.interp(target, sizes, latencies_ms)), True
    order = np.argsort(sizes)
    last, last_ms = sizes[order[-1]], float(latencies_ms[order[-1]])
    if len(sizes) == 1 or sizes[order[-2]] == last:
        return last_ms * target / last, True
    slope = (last_ms - float(latencies_ms[order[-2]])) / (last - sizes[order[-2]])
    return max(last_ms, last_ms + slope * (target - last)), True


def padding_choices(values: Sequence[Value], weights: Sequence[float], latencies_ms: Sequence[float],
                    multiples: Sequence[int] = PAD_MULTIPLES, max_sizes: int = 3) -> list[Padding]:  # fmt: skip
    """No padding, padding every dim up to each multiple in ``multiples``, and (one dim) to the nearest of
    B = 1..``max_sizes`` bucket sizes (the best B sizes by expected latency); sorted by expected latency."""
    values = [tuple(v) for v in values]
    choices = [_padding("none", values, values, weights, latencies_ms)]
    for m in multiples:
        targets = [tuple(-(-d // m) * m for d in v) for v in values]
        if targets != values:
            choices.append(_padding(f"multiple of {m}", targets, values, weights, latencies_ms))
    if len(values[0]) == 1:
        total = float(sum(weights))
        for b in range(1, min(max_sizes, len(values) - 1) + 1):
            _, bounds = best_partition(len(values), b, lambda i, j: sum(weights[x] for x in range(i, j)) * latencies_ms[j - 1] / total)
            targets = [values[end - 1] for start, end in bounds for _ in range(start, end)]
            sizes = ", ".join(str(values[end - 1][0]) for _, end in bounds)
            choices.append(_padding(f"nearest of {sizes}", targets, values, weights, latencies_ms))
    return sorted(choices, key=lambda p: (p.expected_ms, p.label != "none"))


def _padding(label: str, targets: list, values: list, weights, latencies_ms) -> Padding:
    looked_up = [latency_at(t, values, latencies_ms) for t in targets]
    return Padding(label, tuple(targets), expected_latency(weights, [x for x, _ in looked_up]), any(i for _, i in looked_up))
