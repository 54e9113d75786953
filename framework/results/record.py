"""The typed, frozen records of one experiment: what it was (``Experiment``) and what it gave (``Result``).

Nothing mutates a record: a step that learns something returns ``dataclasses.replace(result, ...)``.
Sequences are stored as tuples (lists given to a constructor are frozen), so a record read back from disk
equals the one written. ``Result.to_json`` is ``summary.json``; the raw samples (``Samples``) go to
``latencies.csv`` and the resource timeline to ``resources.csv`` (``results.store``).

``SCHEMA_VERSION`` is written into every ``summary.json``. Version 1 (no ``schema_version`` key, written
before the records were typed) is migrated on reading; a newer or foreign file raises ``ResultFileError``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import ClassVar

from framework.errors import ResultFileError
from framework.files import safe_component

SCHEMA_VERSION = 2
STATUSES = ("ok", "failed", "skipped", "unavailable", "tuning")  # tuning: a configuration --tune tried (``sweep.tune``)


def options_text(options: dict, separator: str = ", ", sort: bool = False) -> str:
    """Engine options as a user types them: ``cuda_graph=true, compile=default`` ("" when there are none)."""
    items = sorted(options.items()) if sort else options.items()
    return separator.join(f"{k}={_option_value(v)}" for k, v in items)


def _option_value(value: object) -> str:
    return {True: "true", False: "false", None: "none"}[value] if value is None or isinstance(value, bool) else str(value)


def _freeze(value):
    """Lists become tuples, recursively (inside dicts too); records and scalars are kept."""
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, dict):
        return {k: _freeze(v) for k, v in value.items()}
    return value


class Record:
    """Base of every record: frozen sequences, and ``from_dict`` that builds nested records by field name."""

    nested: ClassVar[dict[str, type]] = {}  # field name -> record class

    def __post_init__(self) -> None:
        for f in fields(self):
            if f.name not in self.nested:
                object.__setattr__(self, f.name, _freeze(getattr(self, f.name)))

    @classmethod
    def from_dict(cls, data: dict | None):
        if data is None:
            return None
        if not isinstance(data, dict):
            raise ValueError(f"{cls.__name__}: expected a mapping, got {type(data).__name__}")
        names = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in names}
        for name, record in cls.nested.items():
            if name in values and not isinstance(values[name], Record):
                values[name] = record.from_dict(values[name])
        return cls(**values)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Experiment(Record):
    """One cell of the sweep: model x example shape x engine x precision x batch size."""

    model: str
    shape_tag: str
    example_shapes: tuple[tuple[int, ...], ...]
    engine: str
    precision: str
    batch_size: int
    device_kind: str | None = None  # the GPU kind (a Ray accelerator type) of a GPU experiment, with --devices; None otherwise

    def __post_init__(self) -> None:
        super().__post_init__()
        texts = (self.model, self.shape_tag, self.engine, self.precision)
        shapes_ok = all(isinstance(s, tuple) and all(isinstance(d, int) and not isinstance(d, bool) for d in s) for s in self.example_shapes)
        if not all(isinstance(t, str) for t in texts) or not shapes_ok or isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int):
            raise ValueError(f"an experiment is named by strings and integers, got {self!r}")
        if self.device_kind is not None and not isinstance(self.device_kind, str):
            raise ValueError(f"an experiment's GPU kind is a string, got {self.device_kind!r}")

    @property
    def key(self) -> tuple:
        """What two runs' results are matched on (``compare``); the GPU kind only where one was named."""
        return (self.model, self.shape_tag, self.engine, self.precision, self.batch_size) + ((self.device_kind,) if self.device_kind else ())

    @property
    def on(self) -> str:
        return f" on {self.device_kind}" if self.device_kind else ""

    @property
    def name(self) -> str:
        return f"{self.model} {self.shape_tag} {self.engine} {self.precision} bs{self.batch_size}{self.on}"

    @property
    def series(self) -> str:
        """How plots and tables name it within one shape and batch size."""
        return f"{self.engine} {self.precision}{self.on}"

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        if data["device_kind"] is None:  # as results without GPU kinds were always written
            del data["device_kind"]
        return data

    def folder(self, output: Path) -> Path:
        kind = f"__{safe_component(self.device_kind)}" if self.device_kind else ""
        leaf = f"{self.engine}__{self.precision}__bs{self.batch_size}{kind}"
        return Path(output) / safe_component(self.model) / safe_component(self.shape_tag) / leaf


@dataclass(frozen=True)
class LatencyStats(Record):
    """Statistics of one timed loop (``measure.stats``); percentiles None where n cannot support them."""

    n: int
    mean_ms: float
    std_ms: float
    cv: float
    min_ms: float
    median_ms: float
    median_ci99_low_ms: float | None
    median_ci99_high_ms: float | None
    iqr_ms: float
    mad_ms: float
    tukey_outliers: int
    p90_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    max_ms: float
    throughput_items_per_s: float
    timed_region_s: float
    stop_rule: str | None = None  # what ended the loop: converged, max-duration, iterations (fixed); None: before it was kept
    ci_half_width: float | None = None  # the median's 99% CI, larger side / median (measure.stats.ci_half_width)
    warmup_iterations: int | None = None
    warmup_rule: str | None = None  # what ended the warm-up: settled, max-duration, iterations (fixed)


@dataclass(frozen=True)
class AgreementFigures(Record):
    """How far outputs are from PyTorch fp32, worst over the outputs (``measure.agreement``)."""

    max_abs_error: float
    mean_abs_error: float
    share_close: float
    cosine_similarity: float
    relative_l2_error: float
    has_nan_or_inf: bool
    rtol: float
    atol: float
    all_close: bool
    top1_agreement: float | None = None
    share_within_tolerance: float | None = None  # |got - ref| <= tolerance x RMS(ref); None: written before it was
    tolerance: float | None = None  # the precision's (``precisions.py``)


@dataclass(frozen=True)
class Agreement(Record):
    nested: ClassVar[dict[str, type]] = {"worst": AgreementFigures}

    worst: AgreementFigures
    outputs: dict = field(default_factory=dict)  # output name -> its own figures (and top-k table)
    # After the timed run: output name -> {"engine": x, "reference": y}, how much the engine's and PyTorch's
    # answers changed from the timed inputs to the varied ones (``measure.agreement.output_changes``).
    changes: dict = field(default_factory=dict)

    def top_k_table(self) -> tuple | None:
        return next((o["top_k"] for o in self.outputs.values() if "top_k" in o), None)


@dataclass(frozen=True)
class Accuracy(Record):
    samples: int
    top1: float
    top5: float


@dataclass(frozen=True)
class Resources(Record):
    """Memory, CPU and GPU use around the timed loops (``measure.monitor``); None where not sampled."""

    rss_before_load_mb: float | None = None  # the engine's own share of the peak is peak minus this
    cuda_context_mb: float | None = None
    torch_max_allocated_mb: float | None = None
    samples: int | None = None
    interval_s: float | None = None
    peak_rss_mb: float | None = None
    mean_cpu_pct: float | None = None
    peak_cpu_pct: float | None = None
    peak_gpu_mem_used_mb: float | None = None
    peak_process_gpu_mem_mb: float | None = None
    mean_gpu_util_pct: float | None = None
    sm_clock_min_mhz: float | None = None
    sm_clock_max_mhz: float | None = None
    peak_temperature_c: float | None = None
    peak_power_w: float | None = None
    throttle_reasons: tuple[str, ...] = ()
    other_cpu_pct: float | None = None  # CPU time other processes used during the timed loops, % of one core
    other_gpu_processes: dict = field(default_factory=dict)
    warnings: tuple[str, ...] = ()

    @property
    def engine_rss_mb(self) -> float | None:
        if self.peak_rss_mb is None or self.rss_before_load_mb is None:
            return None
        return self.peak_rss_mb - self.rss_before_load_mb


@dataclass(frozen=True)
class ExportInfo(Record):
    """The shape's ONNX export (or its cached copy), shared by every experiment of the shape."""

    export_s: float | None = None
    onnx_nodes: int | None = None
    onnx_size_mb: float | None = None
    exporter: str | None = None
    opset: int | None = None
    export_max_abs_error: float | None = None
    export_from_cache: bool | None = None
    tracer_warnings: tuple[str, ...] = ()  # the trace's warnings (``ExportResult.warnings``): frozen control flow


@dataclass(frozen=True)
class Samples(Record):
    """Raw timed samples: host clock, device time (GPU engines), and the process of each (``--repeats``)."""

    latencies_ns: tuple[int, ...]
    model_latencies_ns: tuple[int, ...] | None = None
    processes: tuple[int, ...] | None = None


@dataclass(frozen=True)
class Verdict(Record):
    """``measure.validity.judge``'s answer: valid or not (with reasons), and warnings apart."""

    validity: str
    invalid_reasons: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    enqueue_median_ms: float | None = None


@dataclass(frozen=True)
class Result(Record):
    """Everything one experiment gave. ``status``: ok, failed, skipped (a precision the engine does not run)
    or unavailable (an engine this machine cannot run); ``validity`` is judged for ok results only."""

    nested: ClassVar[dict[str, type]] = {
        "experiment": Experiment, "latency": LatencyStats, "latency_model": LatencyStats, "agreement": Agreement,
        "agreement_after_timing": Agreement, "dataset_agreement": Agreement, "accuracy": Accuracy,
        "resources": Resources, "export": ExportInfo, "samples": Samples,
    }  # fmt: skip

    experiment: Experiment
    runtime: str
    device: str
    status: str = "pending"
    reason: str = ""
    fingerprint: str | None = None
    run_id: str | None = None
    iterations: int | None = None
    warmup: int | None = None
    min_duration_s: float | None = None
    target_ci: float | None = None  # the run length's target: the median's 99% CI within +-this (relative)
    isolated: bool | None = None
    parameters: int | None = None
    load_s: float | None = None  # cold start: loading the PyTorch module
    export: ExportInfo | None = None
    build_s: float | None = None  # session creation or engine build
    model_size_mb: float | None = None
    first_inference_ms: float | None = None  # the first call, lazy initialisation included
    clock: str | None = None
    latency: LatencyStats | None = None  # latency-all, host clock
    latency_model: LatencyStats | None = None  # GPU engines: device time, CUDA events
    enqueue_median_ms: float | None = None
    agreement: Agreement | None = None  # before the timed loop, on the timed inputs
    agreement_after_timing: Agreement | None = None  # after it, on other inputs (stale outputs show)
    dataset_agreement: Agreement | None = None
    accuracy: Accuracy | None = None
    resources: Resources | None = None
    engine_settings: dict = field(default_factory=dict)
    configuration: dict = field(default_factory=dict)  # the engine options that differ from its defaults (threads aside)
    compile_s: float | None = None  # torch.compile's first call (or a build on first use), never in any latency
    tuning: dict | None = None  # with --tune: configurations tried, seconds spent, the budget (``sweep.tune``)
    recipe_search: dict | None = None  # int8/fp16 recipe search: a step, or the search that chose this graph (``sweep.precision_search``)
    machine: dict = field(default_factory=dict)  # CPU, GPUs and driver, library versions (environment.fingerprint_fields)
    validity: str | None = None
    invalid_reasons: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    traceback: str | None = None
    exit_status: int | None = None
    log_tail: str | None = None
    repeats: int = 1
    process_medians_ms: tuple[float, ...] | None = None
    process_model_medians_ms: tuple[float, ...] | None = None
    started_at: float | None = None  # Unix time its process started (the sweep's clock; with --repeats, the first one's)
    stages_s: dict = field(default_factory=dict)  # seconds per stage of its process (``experiment.run``), and 'process': start to result
    samples: Samples | None = None  # latencies.csv, not summary.json
    timeline_csv: str | None = None  # resources.csv, not summary.json

    @property
    def is_valid(self) -> bool:
        return self.status == "ok" and self.validity == "valid"

    @property
    def is_usable(self) -> bool:
        """Valid, and measured fully or as a configuration ``--tune`` tried: a figure worth comparing."""
        return self.status in ("ok", "tuning") and self.validity == "valid"

    @property
    def headline(self) -> LatencyStats | None:
        """The latency a comparison is about: device time for GPU engines, the host clock otherwise."""
        return self.latency_model or self.latency

    def headline_samples_ms(self) -> tuple[float, ...]:
        if self.samples is None:
            return ()
        raw = self.samples.model_latencies_ns if self.latency_model and self.samples.model_latencies_ns else self.samples.latencies_ns
        return tuple(ns / 1e6 for ns in raw)

    def headline_process_medians(self) -> tuple[float, ...] | None:
        return self.process_model_medians_ms if self.latency_model else self.process_medians_ms

    def judged(self, verdict: Verdict) -> Result:
        return dataclasses.replace(self, validity=verdict.validity, invalid_reasons=verdict.invalid_reasons,
                                   warnings=verdict.warnings, enqueue_median_ms=verdict.enqueue_median_ms)  # fmt: skip

    def ended(self, status: str, reason: str = "", **more) -> Result:
        return dataclasses.replace(self, status=status, reason=reason, **more)

    def to_json(self) -> dict:
        """``summary.json``: the experiment's keys at the top (as every version wrote them), then the rest."""
        data = {"schema_version": SCHEMA_VERSION, **self.experiment.to_dict()}
        for f in fields(self):
            if f.name in ("experiment", "samples", "timeline_csv"):
                continue
            value = getattr(self, f.name)
            data[f.name] = value.to_dict() if isinstance(value, Record) else value
        return data

    @classmethod
    def from_json(cls, data: object, samples: Samples | None = None, timeline_csv: str | None = None, where: str = "") -> Result:
        """A ``summary.json`` read back (version 1 migrated); ``ResultFileError`` naming ``where`` if it is not one."""
        if not isinstance(data, dict) or "engine" not in data:
            raise ResultFileError(f"{where}: not a deploybench result (no 'engine' field)")
        version = data.get("schema_version", 1)
        if version not in (1, SCHEMA_VERSION):
            raise ResultFileError(f"{where}: result format version {version!r}; this deploybench reads versions 1 and "
                                  f"{SCHEMA_VERSION}: measure again with --force")  # fmt: skip
        if version == 1:
            data = _migrate_v1(data)
        try:
            experiment = Experiment.from_dict(data)
            return cls.from_dict({**data, "experiment": experiment, "samples": samples, "timeline_csv": timeline_csv})
        except (TypeError, ValueError, KeyError, AttributeError) as exc:
            raise ResultFileError(f"{where}: damaged result (format version {version}): {exc}; measure again with --force") from None


_V1_EXPORT_KEYS = tuple(f.name for f in fields(ExportInfo))


def _migrate_v1(data: dict) -> dict:
    """Version 1 kept the export's figures at the top level and had no schema version."""
    migrated = {k: v for k, v in data.items() if k not in _V1_EXPORT_KEYS}
    export = {k: data[k] for k in _V1_EXPORT_KEYS if k in data}
    migrated["export"] = export or None
    migrated.setdefault("runtime", "unknown")
    migrated.setdefault("device", "cpu")
    return migrated
