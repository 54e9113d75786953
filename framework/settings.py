"""What a sweep measures and how, validated before anything runs.

``MeasureSettings`` is what one experiment needs to be measured as the sweep would: it travels inside every
``Job``. Its fields, with the sweep's ``exporter`` and ``repeats``, are what a finished experiment must
match to be resumed (``sweep.plan.fingerprint``); a field marked ``fingerprint=False`` (the sampler period)
does not change the figures. No list of names is kept by hand: both come from the dataclass fields.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from framework.errors import DeployBenchError
from framework.machine_check import default_threads, physical_cores, pin_set, usable_cpus
from framework.measure.convergence import DEFAULT_MAX_DURATION_S, DEFAULT_MIN_ITERATIONS, DEFAULT_TARGET_CI
from framework.measure.monitor import DEFAULT_INTERVAL_S
from framework.precisions import PRECISIONS
from framework.sweep.cluster import ClusterSettings


@dataclass(frozen=True)
class MeasureSettings:
    # Run length (``measure.convergence``). Adaptive (iterations None): until the median's 99% CI is within
    # +-target_ci of it, at least min_iterations and min_duration, at most max_duration per timed loop.
    # Fixed (--iterations N): at least N timed iterations and min_duration, whichever ends later.
    iterations: int | None = None
    warmup: int = 10  # warm-up: at least `warmup` iterations and `warmup_duration` s (adaptive: and no trend)
    min_duration: float = 1.0
    warmup_duration: float = 0.0
    target_ci: float = DEFAULT_TARGET_CI
    min_iterations: int = DEFAULT_MIN_ITERATIONS
    max_duration: float = DEFAULT_MAX_DURATION_S
    engine_options: dict = field(default_factory=dict)  # --option NAME=VALUE, to engines that know NAME
    accuracy_limit: int | None = None  # evaluate accuracy on at most this many dataset samples
    sample_interval_s: float = field(default=DEFAULT_INTERVAL_S, metadata={"fingerprint": False})

    def fingerprint_fields(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.metadata.get("fingerprint", True)}

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def required_iterations(self) -> int:
        """The sample count a valid result needs: --iterations in fixed mode, --min-iterations otherwise."""
        return self.iterations if self.iterations is not None else self.min_iterations

    def timing_options(self) -> dict:
        """``time_host``/``time_cuda``'s run-length arguments, besides iterations and warmup."""
        return {"min_duration_s": self.min_duration, "warmup_duration_s": self.warmup_duration, "target_ci": self.target_ci,
                "min_iterations": self.min_iterations, "max_duration_s": self.max_duration}  # fmt: skip

    def validate(self) -> None:
        if (self.iterations is not None and self.iterations < 1) or self.min_iterations < 1 or self.warmup < 0:
            raise DeployBenchError(f"need iterations >= 1, min-iterations >= 1 and warmup >= 0, got {self.iterations}, "
                                   f"{self.min_iterations} and {self.warmup}")  # fmt: skip
        for name in ("min_duration", "warmup_duration", "sample_interval_s"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise DeployBenchError(f"{name.replace('_', '-')} must be a finite number >= 0, got {value}")
        if not math.isfinite(self.max_duration) or self.max_duration <= 0 or self.max_duration < self.min_duration:
            raise DeployBenchError(f"max-duration must be a finite number > 0 and >= min-duration ({self.min_duration}), got {self.max_duration}")
        if not math.isfinite(self.target_ci) or not 0 < self.target_ci < 1:
            raise DeployBenchError(f"target-ci is the median's 99% CI half-width relative to it, between 0 and 1 (0.01: ±1%), got {self.target_ci}")
        if self.accuracy_limit is not None and self.accuracy_limit < 1:
            raise DeployBenchError(f"--limit must be at least 1, got {self.accuracy_limit}")


@dataclass(frozen=True)
class SweepSettings:
    engines: tuple[str, ...] | None = None  # None: every engine this machine can run
    precisions: tuple[str, ...] = ("fp32",)
    batch_sizes: tuple[int, ...] = (1,)
    measure: MeasureSettings = field(default_factory=MeasureSettings)
    output: Path = Path("measurements_results")
    exporter: str = "torchscript"
    keep_outliers: bool = False
    isolate: bool = True  # each experiment in a fresh child process (False: in this process, for debugging)
    repeats: int = 1  # measure each experiment in this many processes, alternating engines
    timeout_s: float = 1800.0  # per experiment (per process) when isolated
    force: bool = False  # re-measure experiments an earlier run already finished
    calibration_samples: int = 64  # int8 calibration: this many dataset samples when the loader has no own set
    threads: int | None = None  # CPU threads of every engine (None: --option threads, else machine_check.default_threads)
    pin: bool = False  # pin each experiment's child process to one CPU of each of `threads` physical cores
    tune: bool = False  # try each engine's options first and measure its fastest valid configuration (sweep.tune)
    tune_budget: float = 180.0  # seconds of tuning per experiment (a configuration starts only within it)
    precision_search: bool = True  # an int8/fp16 result that fails the floor: search a recipe that passes (sweep.precision_search)
    search_budget: float = 300.0  # seconds of that search per experiment
    full_references: bool = False  # references by a forward pass at every batch size (sweep.references): never repeated
    baseline: tuple[str, str] | None = None  # speedups against (engine, precision); None: PyTorch fp32 eager per device
    cluster: ClusterSettings | None = None  # --executor ray: where and in which slots experiments run (sweep.cluster)

    def __post_init__(self) -> None:
        """``threads`` (resolved: the default becomes the number) and ``pin``'s CPUs go into the engine options,
        so the engines get them and the fingerprint covers them. Bad values stay for ``validate`` to refuse."""
        options = {k: v for k, v in self.measure.engine_options.items() if k != "cpus"}  # cpus: only --pin sets them
        threads = self.threads if self.threads is not None else options.get("threads")
        if isinstance(threads, bool):  # --option threads=1 reads as true
            threads = int(threads)
        given = options.get("threads")
        if self.threads is not None and given is not None and given != self.threads:
            raise DeployBenchError(f"--threads {self.threads} and --option threads={given} disagree: give one of them")
        if self.threads is None and threads is not None:  # --option threads=N is --threads N: fixed, not tuned
            object.__setattr__(self, "threads", threads)
        options["threads"] = default_threads() if threads is None else threads
        if self.pin and isinstance(options["threads"], int) and options["threads"] > 0:
            options["cpus"] = pin_set(options["threads"])
        object.__setattr__(self, "measure", dataclasses.replace(self.measure, engine_options=options))

    def fixed_options(self) -> set[str]:
        """Engine options the user set (``--option``, ``--threads``): ``--tune`` leaves them as they are."""
        fixed = {name for name in self.measure.engine_options if name not in ("threads", "cpus")}
        return fixed | ({"threads"} if self.threads is not None else set())

    def chosen_engines(self) -> list[str]:
        from framework.engines import ENGINES, engine_availability

        if self.engines is None:
            return [name for name in ENGINES if engine_availability(name) is None]
        unknown = [e for e in self.engines if e not in ENGINES]
        if unknown:
            raise DeployBenchError(f"unknown engines {unknown}; known engines: {', '.join(ENGINES)}")
        return list(self.engines)

    def validate(self) -> None:
        from framework.engines import ENGINES, engine_class

        bad = [p for p in self.precisions if p not in PRECISIONS]
        if bad:
            raise DeployBenchError(f"unknown precisions {bad}; allowed: {', '.join(PRECISIONS)}")
        if not self.precisions or not self.batch_sizes or (self.engines is not None and not self.engines):
            raise DeployBenchError("--engines, --precisions and --batch-sizes each need at least one value")
        if any(b < 1 for b in self.batch_sizes):
            raise DeployBenchError(f"batch sizes must be positive, got {list(self.batch_sizes)}")
        self.measure.validate()
        if self.repeats < 1 or (self.repeats > 1 and not self.isolate):
            raise DeployBenchError(f"--repeats {self.repeats}: needs a positive count, and separate processes (not --in-process)")
        if not math.isfinite(self.tune_budget) or self.tune_budget < 0:
            raise DeployBenchError(f"--tune-budget must be a finite number of seconds >= 0, got {self.tune_budget}")
        if not math.isfinite(self.search_budget) or self.search_budget <= 0:
            raise DeployBenchError(f"--search-budget must be a finite number of seconds > 0, got {self.search_budget}")
        if not math.isfinite(self.timeout_s) or self.timeout_s <= 0:
            raise DeployBenchError(f"the per-experiment timeout must be a positive number, got {self.timeout_s}")
        self._validate_threads()
        if self.cluster is not None:
            self.cluster.validate()
            flags = (("--tune", self.tune), ("--pin", self.pin), ("--in-process", not self.isolate))
            refused = [flag for flag, on in flags if on]
            if refused:
                raise DeployBenchError(f"--executor ray does not support {', '.join(refused)} yet: use the local executor for those")
        known = {name for engine in ENGINES for name in engine_class(engine).options}
        unknown = sorted(set(self.measure.engine_options) - known)
        if unknown:
            raise DeployBenchError(f"unknown engine options {unknown}; known: {', '.join(sorted(known))}")
        self._validate_option_values([engine_class(engine) for engine in ENGINES])

    def _validate_option_values(self, classes: list) -> None:
        """A value of the wrong kind (``channels_last=maybe``) or outside an option's choices (``compile=bogus``)
        is refused here, before anything runs, not by each experiment."""
        for name, value in self.measure.engine_options.items():
            defaults = {type(cls.options[name]) for cls in classes if name in cls.options and name not in ("threads", "cpus")}
            if bool in defaults and not isinstance(value, bool):
                raise DeployBenchError(f"--option {name}={value}: expected true or false")
            if int in defaults and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                raise DeployBenchError(f"--option {name}={value}: expected a whole number >= 0")
            choices = {c for cls in classes for c in cls.option_choices.get(name, ())}
            if choices and value not in choices:
                raise DeployBenchError(f"--option {name}={value}: one of {', '.join(repr(c) for c in sorted(choices))}")

    def _validate_threads(self) -> None:
        threads, cpus = self.measure.engine_options["threads"], len(usable_cpus())
        if not isinstance(threads, int) or threads < 1 or threads > cpus:
            raise DeployBenchError(f"--threads must be a whole number from 1 to the {cpus} CPUs this process may use, got {threads!r}")
        if self.pin and not self.isolate:
            raise DeployBenchError("--pin pins each experiment's child process, and --in-process has none: drop one of them")
        cores = physical_cores()
        if self.pin and threads > len(cores):
            raise DeployBenchError(f"--pin --threads {threads}: this process may use {len(cores)} physical cores "
                                   f"(CPUs {usable_cpus()}), and --pin gives each thread a core of its own")  # fmt: skip
