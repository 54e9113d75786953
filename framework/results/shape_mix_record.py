"""What a shape-mix experiment measured (``shape_mix.json``, one per engine x precision x batch size).

Kept apart from ``record.Result``: a shape mix is one process measuring an engine on every bucket of a
distribution, then on a mixed stream, then (where the engine can specialise) a static engine per bucket.
Raw mix latencies are kept with the seed and the drawn bucket of every iteration, so the statistics can be
derived again.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from framework.files import write_atomic

FILE = "shape_mix.json"
SCHEMA_VERSION = 1


@dataclass(frozen=True)
class BucketLatency:
    value: tuple[int, ...]  # the distribution dims' values
    weight: float
    median_ms: float
    ci_ms: tuple[float, float]  # the median's 99% interval
    samples: int
    stop_rule: str | None
    switch_median_ms: float | None = None  # the first call after another bucket's shape (median over the rounds)


@dataclass(frozen=True)
class MixRun:
    """One mixed stream: each iteration's bucket drawn (seeded) from the distribution, its latency kept."""

    label: str  # "unpadded" or the padding rule ("multiple of 32")
    seed: int
    draws: tuple[int, ...]  # bucket index per timed iteration (before padding)
    run_values: tuple[tuple[int, ...], ...]  # per bucket, the shape it ran at (padded or not)
    latencies_ms: tuple[float, ...]
    recompiles: int | None = None  # torch.compile graphs compiled during the stream (None: not compiled)

    @property
    def mean_ms(self) -> float:
        """The measured expected latency: each request weighted as often as the distribution drew it."""
        return float(np.mean(self.latencies_ms))

    @property
    def median_ms(self) -> float:
        return float(np.median(self.latencies_ms))

    @property
    def p99_ms(self) -> float | None:
        """p99 only where the sample supports it (n >= 459, as everywhere in deploybench)."""
        return float(np.percentile(self.latencies_ms, 99)) if len(self.latencies_ms) >= 459 else None

    def bucket_medians(self, buckets: int) -> list[float | None]:
        """Per bucket, the median of its iterations inside the stream (shape switches included)."""
        draws, lat = np.asarray(self.draws), np.asarray(self.latencies_ms)
        return [float(np.median(lat[draws == b])) if np.any(draws == b) else None for b in range(buckets)]


@dataclass(frozen=True)
class StaticBucket:
    """A bucket on an engine specialised for exactly its shape, next to the dynamic engine's figure."""

    value: tuple[int, ...]
    static_ms: float | None
    dynamic_ms: float
    how: str  # "fixed-dims ONNX graph", "torch.compile(dynamic=False)", "CUDA graph", "TensorRT exact profile"
    error: str = ""
    compiles: int | None = None  # torch.compile graphs the static engine compiled (None: not compiled)

    @property
    def ratio(self) -> float | None:
        """Dynamic over static: the cost of dynamism (above 1: the static engine is faster)."""
        return self.dynamic_ms / self.static_ms if self.static_ms else None


@dataclass(frozen=True)
class ShapeMixResult:
    model: str
    engine: str
    precision: str
    batch_size: int
    options: dict
    dims: tuple[str, ...]
    status: str = "ok"  # ok or failed
    reason: str = ""
    traceback: str = ""
    clock: str = "perf_counter_ns"  # host clock around each call (GPU engines: copies and synchronisation included)
    buckets: tuple[BucketLatency, ...] = ()
    mixes: tuple[MixRun, ...] = ()
    static: tuple[StaticBucket, ...] = ()
    static_note: str = ""  # why there is no static form, where there is none
    compiles_per_bucket: int | None = None  # torch.compile graphs compiled from load to the end of the buckets (all of them)
    engine_settings: dict = field(default_factory=dict)

    @property
    def label(self) -> str:
        extra = ",".join(f"{k}={v}" for k, v in sorted(self.options.items()) if k not in ("threads", "cpus"))
        return f"{self.engine} {self.precision}" + (f" ({extra})" if extra else "")

    def distribution_key(self) -> tuple:
        """The distribution measured (dims, bucket values and shares; failed results carry only the dims)."""
        return (self.dims, tuple((b.value, round(b.weight, 12)) for b in self.buckets) if self.buckets else None)

    def to_json(self) -> dict:
        return {"schema_version": SCHEMA_VERSION, **asdict(self)}

    @classmethod
    def from_json(cls, data: dict) -> ShapeMixResult:
        data = {k: v for k, v in data.items() if k != "schema_version"}
        buckets = tuple(BucketLatency(**{**b, "value": tuple(b["value"]), "ci_ms": tuple(b["ci_ms"])}) for b in data.pop("buckets", ()))
        mixes = tuple(MixRun(**{**m, "draws": tuple(m["draws"]), "run_values": tuple(map(tuple, m["run_values"])),
                                "latencies_ms": tuple(m["latencies_ms"])}) for m in data.pop("mixes", ()))  # fmt: skip
        static = tuple(StaticBucket(**{**s, "value": tuple(s["value"])}) for s in data.pop("static", ()))
        return cls(**{**data, "dims": tuple(data["dims"])}, buckets=buckets, mixes=mixes, static=static)

    def save(self, folder: Path) -> Path:
        path = Path(folder) / FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, json.dumps(self.to_json(), indent=1))
        return path


def load_shape_mixes(root: Path) -> list[ShapeMixResult]:
    """The ``shape_mix.json`` files under ``root`` measured on the same distribution as the newest one, in a stable
    order: results of another distribution (an earlier run's) are left out with a warning, and so are unreadable
    files."""
    found = []
    for path in sorted(Path(root).glob(f"*/{FILE}")):
        try:
            found.append((path.stat().st_mtime, path, ShapeMixResult.from_json(json.loads(path.read_text()))))
        except (OSError, ValueError, TypeError, KeyError) as exc:
            warnings.warn(f"{path}: not a readable shape-mix result ({type(exc).__name__}: {exc}); skipped", stacklevel=2)
    if not found:
        return []
    measured = [item for item in found if item[2].buckets] or found  # a failed result carries no buckets
    key = max(measured, key=lambda item: item[0])[2].distribution_key()

    def matches(result: ShapeMixResult) -> bool:
        return result.distribution_key() == key or (not result.buckets and result.dims == key[0])

    same = [r for _, _, r in found if matches(r)]
    others = [str(p.parent.name) for _, p, r in found if not matches(r)]
    if others:
        warnings.warn(f"{root}: {', '.join(others)} measured another distribution than the newest result; left out of the report", stacklevel=2)
    return same
