"""The interface every engine implements, so each runtime is one new file.

An engine turns named numpy inputs into named numpy outputs. The measurement loop never calls ``infer``
directly: it asks for ``make_step(inputs)``, a zero-argument callable doing exactly the work to be timed,
so an engine can move inputs to the device or bind buffers once, outside the timed region.

GPU engines are measured two ways: ``make_step`` is host inputs to host outputs (latency-all: copies
included, host clock), ``make_device_step`` is device compute only with inputs already on the device
(latency-model: CUDA events on the stream the engine runs on).

The lifecycle is Polygraphy's runner pattern: the public methods check the state (load once, use, close)
and call the subclass's ``_load``/``_infer``/``_close``, so misuse fails with ``EngineStateError`` here
instead of an AttributeError deep inside a runtime.

CPU threads are every engine's options (``THREAD_OPTIONS``): ``threads`` (0: the physical cores this process
may use, ``machine_check.default_threads``) is ONNX Runtime's ``intra_op_num_threads`` and, while a PyTorch
engine (or TensorRT's host side, on torch tensors) is loaded, ``torch.set_num_threads``; ``cpus`` is the set
``--pin`` pinned the experiment's process to, checked when the engine loads. ``describe`` records both.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np

from framework.config import ModelConfig
from framework.errors import DeployBenchError
from framework.machine_check import default_threads, usable_cpus
from framework.precisions import PRECISIONS


class EngineStateError(DeployBenchError):
    """An engine was used out of order: run before ``load``, loaded twice, or used after ``close``."""


class UnknownEngineError(DeployBenchError):
    """An engine name that ``framework.engines.ENGINES`` does not know; the message lists the known ones."""


@dataclass
class ModelArtifacts:
    """What engines build from: the config, the PyTorch module and the ONNX files.

    In an isolated child process only PyTorch engines need the module, so it can be given as
    ``module_factory`` and is then loaded on first use: an ONNX Runtime child never holds its weights twice.
    """

    config: ModelConfig
    module: object | None = None  # torch.nn.Module in eval mode
    onnx_paths: dict[str, Path] = field(default_factory=dict)  # precision -> ONNX file with that precision in the graph
    cache_dir: Path | None = None  # where engines may keep build caches
    module_factory: Callable[..., object] | None = None  # (attention="") -> module

    def get_module(self, attention: str = ""):
        """The PyTorch module; ``attention``: a variant built with another attention implementation (the
        loader's ``attention_implementations``), never the shared reference module itself."""
        if attention:
            if self.module_factory is None:
                raise DeployBenchError(f"model {self.config.name!r}: attention={attention} needs the model's loader (no module_factory)")
            return self.module_factory(attention)
        if self.module is None and self.module_factory is not None:
            self.module = self.module_factory()
        if self.module is None:
            raise DeployBenchError(
                f"model {self.config.name!r}: this engine needs the PyTorch module, and none was loaded "
                "(ModelArtifacts was given neither module nor module_factory)"
            )
        return self.module

    def onnx_for(self, precision: str) -> Path:
        if precision not in self.onnx_paths:
            raise DeployBenchError(
                f"model {self.config.name!r}: no ONNX file with {precision} in the graph was produced "
                f"(have: {', '.join(sorted(self.onnx_paths)) or 'none'})"
            )
        return self.onnx_paths[precision]

    def require_cache_dir(self, engine: str) -> Path:
        """The folder where ``engine`` keeps what it builds (TensorRT engines, timing caches)."""
        if self.cache_dir is None:
            raise DeployBenchError(f"model {self.config.name!r}: {engine} keeps its built engines in a cache folder, "
                                   "and none was given (ModelArtifacts.cache_dir is None)")  # fmt: skip
        return Path(self.cache_dir)


THREAD_OPTIONS: dict[str, object] = {"threads": 0, "cpus": ()}  # every engine's; cpus is set by --pin


def thread_counts() -> list[dict]:
    """CPU engines' thread configurations for ``tuning_space``: half the default and one thread (the default
    itself is the first configuration, {}). Fewer threads than cores often win at small batches."""
    default = default_threads()
    return [{"threads": n} for n in dict.fromkeys((default // 2, 1)) if 0 < n < default]


_STATE_WORDS = {"new": "not loaded yet", "loading": "half-loaded (its load() failed)", "loaded": "already loaded",
                "closed": "closed"}  # fmt: skip


class Engine(ABC):
    name: ClassVar[str]  # what users type: --engines pytorch-cpu
    runtime: ClassVar[str]  # library family: pytorch, onnxruntime, tensorrt
    device: ClassVar[str]  # cpu or cuda: decides which plot an engine lands in
    precisions: ClassVar[tuple[str, ...]] = ("fp32",)  # names from framework.precisions.PRECISIONS
    # The ONNX graph a precision runs, where it is not the precision's own (see artifacts.graphs.INT8_VARIANTS).
    graphs: ClassVar[dict[str, str]] = {}
    needs_onnx: ClassVar[bool] = False
    options: ClassVar[dict[str, object]] = {}  # option name -> default; set with --option NAME=VALUE
    option_choices: ClassVar[dict[str, tuple]] = {}  # option name -> the values it takes, where they are few
    # Whether the device step returns before the GPU has finished. Only then is the host time of the call
    # its enqueue time, and the host-bound rule meaningful (ONNX Runtime's Run blocks until the GPU is done).
    device_step_returns_early: ClassVar[bool] = True
    uses_torch: ClassVar[bool] = False  # torch.set_num_threads(threads) while loaded, restored on close

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        unknown = [p for p in (*cls.precisions, *cls.graphs) if p not in PRECISIONS]
        if unknown:
            raise TypeError(f"{cls.__name__} names precisions {unknown} that framework.precisions.PRECISIONS "
                            f"does not define ({', '.join(PRECISIONS)})")  # fmt: skip
        cls.options = {**THREAD_OPTIONS, **cls.options}

    def __init__(self, artifacts: ModelArtifacts, precision: str, options: dict | None = None) -> None:
        if precision not in type(self).precisions:
            raise DeployBenchError(f"{self.name} does not run {precision} (it runs {', '.join(self.precisions)})")
        self.artifacts = artifacts
        self.config = artifacts.config
        self.precision = precision
        self.settings = {**type(self).options, **{k: v for k, v in (options or {}).items() if k in type(self).options}}
        self._state = "new"
        self._torch_threads_before: int | None = None

    @property
    def threads(self) -> int:
        """The CPU threads this engine computes with (host threads for GPU engines)."""
        return int(self.settings["threads"]) or default_threads()

    @property
    def pinned_cpus(self) -> list[int]:
        return sorted(int(c) for c in self.settings["cpus"] or ())

    @classmethod
    def configuration(cls, options: dict) -> dict:
        """The options in ``options`` that differ from this engine's defaults: what names a configuration.
        ``threads`` counts when it differs from the machine's default; ``cpus`` (set by --pin) never does."""
        out = {}
        for name, default in cls.options.items():
            value = options.get(name, default)
            if name == "cpus" or value == default or (name == "threads" and (not value or int(value) == default_threads())):
                continue
            out[name] = value
        return out

    @classmethod
    def tuning_space(cls, config: ModelConfig, precision: str, batch_size: int) -> list[dict]:
        """The configurations ``--tune`` tries (``sweep.tune``), most promising first; the first is always the
        defaults ({}). Engines with documented options worth trying extend it."""
        return [{}]

    @classmethod
    def expected_tuning_s(cls, options: dict) -> float:
        """Roughly how long trying ``options`` takes (compiling, building): ``--tune`` skips a configuration
        whose expectation exceeds what is left of its budget, rather than kill it half-way."""
        return 0.0

    @classmethod
    def graph_for(cls, precision: str) -> str:
        return cls.graphs.get(precision, precision)

    @property
    def onnx_path(self) -> Path:
        """The ONNX graph this engine runs at its precision."""
        return self.artifacts.onnx_for(self.graph_for(self.precision))

    @classmethod
    @abstractmethod
    def availability(cls) -> str | None:
        """None when this machine can run the engine, else the reason it cannot (shown by ``deploybench list``).

        Required: an engine that cannot say whether it runs here must not be listed as runnable."""
        raise NotImplementedError(f"{cls.__name__} does not implement availability()")

    # ---- lifecycle: public methods check the state, subclasses implement the underscored ones ----------
    @property
    def is_loaded(self) -> bool:
        return self._state == "loaded"

    def load(self) -> None:
        """Build the session, engine or device copy of the model. Timed separately as build time. Once only."""
        if self._state != "new":
            raise EngineStateError(f"{self.name}: load() refused, the engine is {_STATE_WORDS[self._state]}; "
                                   "an engine loads once: make a new one")  # fmt: skip
        self._check_pinned()
        self._state = "loading"  # stays so if _load raises: close() then frees what it took
        if self.uses_torch:
            import torch

            self._torch_threads_before = torch.get_num_threads()
            torch.set_num_threads(self.threads)
        self._load()
        self._state = "loaded"

    def _check_pinned(self) -> None:
        """``--pin`` pins the experiment's child process before it runs; anywhere else, refuse to measure."""
        if self.pinned_cpus and usable_cpus() != self.pinned_cpus:
            raise DeployBenchError(
                f"{self.name}: this experiment is to run pinned to CPUs {self.pinned_cpus} (--pin), but this process "
                f"runs on CPUs {usable_cpus()}; --pin pins the child process of an isolated sweep (re-running a job.json by "
                f"hand: taskset -c {','.join(map(str, self.pinned_cpus))} python -m framework.sweep.isolation JOB)"
            )

    def _require_loaded(self, method: str) -> None:
        if self._state != "loaded":
            raise EngineStateError(f"{self.name}: {method}() needs a loaded engine, this one is "
                                   f"{_STATE_WORDS[self._state]} (call load(), or use it in a with block)")  # fmt: skip

    def infer(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Host inputs in, host outputs out, named as in the config."""
        self._require_loaded("infer")
        return self._infer(inputs)

    def prepare(self, inputs: dict[str, np.ndarray]) -> float | None:
        """Work the first call would do that is not inference (``torch.compile`` compiling), done now on
        ``inputs``: seconds it took, recorded as ``compile_s`` and kept out of every latency; None when none."""
        self._require_loaded("prepare")
        return self._prepare(inputs)

    def make_step(self, inputs: dict[str, np.ndarray]) -> Callable[[], object]:
        """The exact work one timed iteration does."""
        self._require_loaded("make_step")
        return self._make_step(inputs)

    def make_device_step(self, inputs: dict[str, np.ndarray]) -> tuple[Callable[[], object], object] | None:
        """GPU engines: ``(step, torch.cuda.Stream)`` computing on inputs already on the device. CPU: None."""
        self._require_loaded("make_device_step")
        return self._make_device_step(inputs)

    def describe(self) -> dict:
        """Settings worth recording next to the figures (threads, providers, ...)."""
        self._require_loaded("describe")
        return {"threads": self.threads, "affinity": usable_cpus(), "pinned": bool(self.pinned_cpus), **self._describe()}

    def close(self) -> None:
        """Free what ``load`` took, also after a failed load. Safe to call any number of times."""
        state, self._state = self._state, "closed"  # closed first: a failing _close is not retried
        if state in ("loading", "loaded"):
            try:
                self._close()
            finally:
                if self._torch_threads_before is not None:  # in-process runs: leave torch as it was found
                    import torch

                    torch.set_num_threads(self._torch_threads_before)

    def __enter__(self) -> Engine:
        self.load()
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # ---- what subclasses implement ---------------------------------------------------------------------
    @abstractmethod
    def _load(self) -> None:
        """Build the model for this runtime; called once, by ``load``."""

    @abstractmethod
    def _infer(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """``infer`` on a loaded engine."""

    @abstractmethod
    def _close(self) -> None:
        """Free what ``_load`` took; may find it half done when ``_load`` failed."""

    def _make_step(self, inputs: dict[str, np.ndarray]) -> Callable[[], object]:
        """Default: a full ``_infer`` (no state check inside the timed region)."""
        infer = self._infer
        return lambda: infer(inputs)

    def _make_device_step(self, inputs: dict[str, np.ndarray]) -> tuple[Callable[[], object], object] | None:
        return None

    def _prepare(self, inputs: dict[str, np.ndarray]) -> float | None:
        return None

    def _describe(self) -> dict:
        return {}
