"""What a sweep measures and how: engines, precisions, batch sizes, run length, isolation, resume.

One object, validated before anything runs, and handed as a plain dict (``child_settings``) to the child
process that measures one experiment. ``fingerprint`` is what a finished experiment must match to be
resumed instead of measured again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from framework.artifacts.cache import settings_hash
from framework.engines import ENGINES, PRECISIONS, engine_availability, engine_class
from framework.errors import DeployBenchError
from framework.measure.monitor import DEFAULT_INTERVAL_S
from framework.artifacts.graphs import graph_recipe

if TYPE_CHECKING:
    from framework.sweep.experiment import ShapeContext


@dataclass
class SweepSettings:
    engines: list[str] | None = None  # None: every engine this machine can run
    precisions: list[str] = field(default_factory=lambda: ["fp32"])
    batch_sizes: list[int] = field(default_factory=lambda: [1])
    iterations: int = 100  # at least this many timed iterations ...
    warmup: int = 10
    min_duration: float = 1.0  # ... and at least this many seconds of timed region, whichever ends later
    warmup_duration: float = 0.0  # warm-up: at least `warmup` iterations and at least this many seconds
    output: Path = Path("measurements_results")
    exporter: str = "torchscript"
    keep_outliers: bool = False
    engine_options: dict[str, object] = field(default_factory=dict)  # --option NAME=VALUE, to engines that know NAME
    isolate: bool = True  # each experiment in a fresh child process (False: in this process, for debugging)
    repeats: int = 1  # measure each experiment in this many processes, alternating engines
    timeout_s: float = 1800.0  # per experiment (per process) when isolated
    force: bool = False  # re-measure experiments an earlier run already finished
    accuracy_limit: int | None = None  # evaluate accuracy on at most this many dataset samples
    calibration_samples: int = 64  # int8 calibration: this many of the dataset's samples when the loader has no own set
    sample_interval_s: float = DEFAULT_INTERVAL_S  # resource sampler period during the timed loops; 0 turns it off

    def child_settings(self) -> dict:
        """What a child process needs to measure one experiment as this sweep would."""
        keys = ("iterations", "warmup", "min_duration", "warmup_duration", "engine_options", "accuracy_limit", "sample_interval_s")
        return {k: getattr(self, k) for k in keys}

    def fingerprint(self, context: "ShapeContext", batch_size: int, graph: str | None = None) -> str:
        """Everything that changes an experiment's figures: a finished experiment is resumed only if it matches.
        ``graph``: the ONNX graph the engine runs (``Engine.graph_for``), whose recipe counts too; None without one."""
        keys = ("iterations", "warmup", "min_duration", "warmup_duration", "exporter", "engine_options", "repeats", "accuracy_limit")
        return settings_hash({**{k: getattr(self, k) for k in keys}, "model": context.model_digest, "data": context.data_digest, "shapes": context.shapes,
                              "batch_size": batch_size, "recipe": graph_recipe(graph) if graph else {}})  # fmt: skip

    def chosen_engines(self) -> list[str]:
        if self.engines is None:
            return [name for name in ENGINES if engine_availability(name) is None]
        unknown = [e for e in self.engines if e not in ENGINES]
        if unknown:
            raise DeployBenchError(f"unknown engines {unknown}; known engines: {', '.join(ENGINES)}")
        return list(self.engines)

    def validate(self) -> None:
        bad = [p for p in self.precisions if p not in PRECISIONS]
        if bad:
            raise DeployBenchError(f"unknown precisions {bad}; allowed: {', '.join(PRECISIONS)}")
        if any(b < 1 for b in self.batch_sizes):
            raise DeployBenchError(f"batch sizes must be positive, got {self.batch_sizes}")
        if self.min_duration < 0 or self.warmup_duration < 0:
            raise DeployBenchError(f"durations must be >= 0, got {self.min_duration} and {self.warmup_duration}")
        if self.iterations < 1 or self.warmup < 0:
            raise DeployBenchError(f"need iterations >= 1 and warmup >= 0, got {self.iterations} and {self.warmup}")
        if self.repeats < 1 or (self.repeats > 1 and not self.isolate):
            raise DeployBenchError(f"--repeats {self.repeats}: needs a positive count, and separate processes (not --in-process)")
        if self.timeout_s <= 0:
            raise DeployBenchError(f"the per-experiment timeout must be positive, got {self.timeout_s}")
        known = {name for engine in ENGINES for name in engine_class(engine).options}
        unknown = sorted(set(self.engine_options) - known)
        if unknown:
            raise DeployBenchError(f"unknown engine options {unknown}; known: {', '.join(sorted(known))}")
