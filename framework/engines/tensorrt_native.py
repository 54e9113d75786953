"""Native TensorRT (10/11 Python API): ONNX -> engine with the config's profile -> name-based execution.

Build: ``OnnxParser`` on the ONNX file of the requested precision (precision lives in the graph: the network
is created STRONGLY_TYPED where TensorRT offers it; TensorRT 11 removed the FP16/INT8 builder flags), one
optimization profile from the config's min/opt/max (none when every dim is fixed), an optional workspace limit, a
timing cache persisted under the results' cache folder. The serialized engine is stored with its build
settings (TensorRT version, GPU, compute capability, ONNX hash, profile, ...) and rebuilt when any differ.

Run: torch CUDA tensors are the buffers; ``bind_and_execute`` sets every input shape, checks nothing is left
unspecified, sets every address, then ``execute_async_v3`` on the engine's stream. Timed iterations on the
same shapes then only call ``execute_async_v3``: TensorRT keeps shapes and addresses between calls.

Options: ``workspace_mb`` (default 0: TensorRT's own limit, the device memory; ResNet-50 fp32 with a profile
up to 256x3x512x512 asked for 8.7 GB), ``module`` (default "": the first importable of ``tensorrt`` and
``tensorrt_rtx_bindings``, TensorRT for RTX; name one to force it).
"""

from __future__ import annotations

import importlib
import sys
import time

import numpy as np

from framework.artifacts.cache import cached_build
from framework.engines._cuda import cuda_unavailable_reason, pinned_round_trip
from framework.engines._tensorrt import bind_and_execute, build_settings, check_in_profile, profile_shapes
from framework.engines.base import Engine
from framework.errors import DeployBenchError, EngineUnavailable
from framework.torch_outputs import torch_dtype

TENSORRT_MODULES = ("tensorrt", "tensorrt_rtx_bindings")  # TensorRT, then TensorRT for RTX (same builder API)


def import_tensorrt(module: str = ""):
    """The requested TensorRT module, or with "" the first of ``TENSORRT_MODULES`` that imports."""
    errors = []
    for name in (module,) if module else TENSORRT_MODULES:
        try:
            return importlib.import_module(name)
        except ImportError as exc:
            errors.append(f"{name}: {exc}")
    raise EngineUnavailable(f"no TensorRT Python package is importable ({'; '.join(errors)}); pip install 'deploybench[gpu]'")


def recording_logger(trt):
    """A TensorRT logger that prints warnings and errors to stderr, as ``trt.Logger(WARNING)`` does, and keeps
    the errors: a failed parse, build or deserialization then says TensorRT's own reason (e.g. TensorRT for RTX
    refusing a data-centre GPU's compute capability) in the failed record, not only in the child's log."""

    class RecordingLogger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)  # the documented way to subclass: the base must be initialised explicitly
            self.errors: list[str] = []

        def log(self, severity, msg) -> None:
            if int(severity) <= int(trt.ILogger.Severity.WARNING):
                print(f"[TensorRT] {getattr(severity, 'name', severity)}: {msg}", file=sys.stderr, flush=True)
            if int(severity) <= int(trt.ILogger.Severity.ERROR):
                self.errors.append(str(msg))

        def reason(self) -> str:
            return f"TensorRT said: {self.errors[-1]}" if self.errors else "TensorRT logged no error"

    return RecordingLogger()


class TensorRTEngine(Engine):
    name = "tensorrt"
    runtime = "tensorrt"
    device = "cuda"
    needs_onnx = True
    precisions = ("fp32", "fp16", "int8")
    graphs = {"int8": "int8_symmetric"}  # explicit quantization (QDQ) takes symmetric int8 only
    options = {"workspace_mb": 0, "module": "", "optimization_level": 3, "cuda_graph": False}
    uses_torch = True  # the host side runs on torch tensors: torch.set_num_threads(threads) while loaded

    @classmethod
    def availability(cls) -> str | None:
        try:
            import_tensorrt()
        except EngineUnavailable as exc:
            return str(exc)
        return cuda_unavailable_reason()

    @classmethod
    def tuning_space(cls, config, precision: str, batch_size: int) -> list[dict]:
        """Level 5 searches more tactics (a longer build); a CUDA graph removes per-call launch work."""
        return [{}, {"cuda_graph": True}, {"optimization_level": 5}, {"optimization_level": 5, "cuda_graph": True}]

    # ---- build -------------------------------------------------------------------------------------------
    def _load(self) -> None:
        import torch

        self.trt = trt = import_tensorrt(self.settings["module"])
        self.torch = torch
        self.logger = recording_logger(trt)
        onnx_path = self.onnx_path
        cache = self.artifacts.require_cache_dir(self.name)
        cache.mkdir(parents=True, exist_ok=True)
        self.plan_path = cache / f"tensorrt_{self.precision}_o{int(self.settings['optimization_level'])}.plan"
        major, minor = torch.cuda.get_device_capability()
        self.build_settings = build_settings(
            onnx_path=onnx_path, precision=self.precision, config=self.config,
            workspace_bytes=int(self.settings["workspace_mb"]) << 20, strongly_typed=self._strongly_typed_flag() is not None,
            trt_version=getattr(trt, "__version__", "unknown"), gpu_name=torch.cuda.get_device_name(), compute_capability=f"{major}.{minor}",
            optimization_level=int(self.settings["optimization_level"]),
        )  # fmt: skip

        def build(path):
            start = time.perf_counter()
            path.write_bytes(self._build(onnx_path))
            return {"build_s": time.perf_counter() - start}

        info, self.from_cache, self.cache_status = cached_build(self.plan_path, self.build_settings, build)
        self.build_s = None if self.from_cache else info["build_s"]
        runtime = trt.Runtime(self.logger)
        self.engine = runtime.deserialize_cuda_engine(self.plan_path.read_bytes())
        if self.engine is None:
            raise DeployBenchError(f"{trt.__name__} could not deserialize {self.plan_path} on this GPU ({self.logger.reason()})")
        self.context = self.engine.create_execution_context()
        self.stream = torch.cuda.Stream()
        self.input_names, self.output_names = [], []
        for i in range(self.engine.num_io_tensors):
            tensor = self.engine.get_tensor_name(i)
            is_input = self.engine.get_tensor_mode(tensor) == trt.TensorIOMode.INPUT
            (self.input_names if is_input else self.output_names).append(tensor)
        if sorted(self.input_names) != sorted(self.config.input_names):
            raise DeployBenchError(f"engine inputs {self.input_names} differ from the config's {self.config.input_names}")

    def _strongly_typed_flag(self):
        flags = self.trt.NetworkDefinitionCreationFlag
        return getattr(flags, "STRONGLY_TYPED", None)

    def _build(self, onnx_path) -> bytes:
        trt = self.trt
        builder = trt.Builder(self.logger)
        flag = self._strongly_typed_flag()
        network = builder.create_network(0 if flag is None else 1 << int(flag))
        parser = trt.OnnxParser(network, self.logger)
        if not parser.parse_from_file(str(onnx_path)):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise DeployBenchError(f"TensorRT's ONNX parser rejected {onnx_path}: {errors}")
        config = builder.create_builder_config()
        config.builder_optimization_level = self.build_settings["optimization_level"]  # 0-5; TensorRT's default is 3
        if self.build_settings["workspace_bytes"]:
            config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, self.build_settings["workspace_bytes"])
        if flag is None and self.precision == "fp16" and hasattr(trt.BuilderFlag, "FP16"):
            config.set_flag(trt.BuilderFlag.FP16)  # TensorRT < 10 without strong typing: permission for fp16 layers
        timing_cache_path = self.artifacts.cache_dir / "tensorrt_timing.cache"
        timing_cache = None
        if hasattr(config, "create_timing_cache"):
            blob = timing_cache_path.read_bytes() if timing_cache_path.is_file() else b""
            timing_cache = config.create_timing_cache(blob)
            config.set_timing_cache(timing_cache, ignore_mismatch=False)
        profiles = profile_shapes(self.config)
        if profiles:
            profile = builder.create_optimization_profile()
            for tensor, (low, opt, high) in profiles.items():
                profile.set_shape(tensor, low, opt, high)
            config.add_optimization_profile(profile)
        plan = builder.build_serialized_network(network, config)
        if plan is None:
            raise DeployBenchError(f"{trt.__name__} failed to build an engine from {onnx_path} ({self.logger.reason()})")
        if timing_cache is not None:
            timing_cache_path.write_bytes(bytes(config.get_timing_cache().serialize()))
        return bytes(plan)

    # ---- run ---------------------------------------------------------------------------------------------
    def _torch_dtype(self, name: str):
        """The torch dtype of an engine tensor (TensorRT dtype -> numpy -> torch)."""
        return torch_dtype(self.trt.nptype(self.engine.get_tensor_dtype(name)))

    def _device_inputs(self, inputs: dict[str, np.ndarray]) -> dict:
        check_in_profile(self.config, {n: a.shape for n, a in inputs.items()})
        return {n: self.torch.from_numpy(inputs[n]).to("cuda", dtype=self._torch_dtype(n)).contiguous() for n in self.input_names}

    def _allocate(self, name: str, shape) -> object:
        return self.torch.empty(shape, dtype=self._torch_dtype(name), device="cuda")

    def _execute(self, device_inputs: dict) -> dict:
        with self.torch.cuda.stream(self.stream):
            return bind_and_execute(self.context, device_inputs, self.output_names, self._allocate,
                                    lambda t: t.data_ptr(), self.stream.cuda_stream)  # fmt: skip

    def _infer(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        outputs = self._execute(self._device_inputs(inputs))
        self.stream.synchronize()
        return {n: outputs[n].float().cpu().numpy() if outputs[n].is_floating_point() else outputs[n].cpu().numpy()
                for n in self.config.output_names}  # fmt: skip

    def _make_device_step(self, inputs: dict[str, np.ndarray]):
        self._keep = device_inputs = self._device_inputs(inputs)
        self._keep_out = self._execute(device_inputs)  # binds shapes and addresses once
        return self._launcher(), self.stream

    def _launcher(self):
        """One enqueue of the bound engine. With ``cuda_graph``, a CUDA graph of it, captured on its stream after
        a plain run has settled shapes and addresses (TensorRT's documented way), replayed each call."""
        context, handle = self.context, self.stream.cuda_stream
        if not self.settings["cuda_graph"]:
            return lambda: context.execute_async_v3(handle)
        context.execute_async_v3(handle)
        self.stream.synchronize()
        graph = self.torch.cuda.CUDAGraph()
        with self.torch.cuda.graph(graph, stream=self.stream):
            context.execute_async_v3(handle)
        return graph.replay

    def _make_step(self, inputs: dict[str, np.ndarray]):
        device_inputs = self._device_inputs(inputs)
        device_outputs = self._execute(device_inputs)  # binds shapes and addresses once
        return pinned_round_trip(self.stream, [inputs[n] for n in device_inputs], list(device_inputs.values()),
                                 self._launcher(), lambda: list(device_outputs.values()))  # fmt: skip

    def make_shape_step(self, inputs: dict[str, np.ndarray]):
        """A host step that sets its input shapes and tensor addresses on every call (``set_input_shape``,
        ``infer_shapes``, ``set_tensor_address``, then ``execute_async_v3``): the shape-mix stream alternates
        buckets on this one execution context, and ``make_step`` binds once, so its steps would run on the last
        bound shape. This is what serving several shapes costs TensorRT (one profile: no profile switch; no CUDA
        graph, which fixes one shape)."""
        self._require_loaded("make_shape_step")
        device_inputs = self._device_inputs(inputs)
        device_outputs = self._execute(device_inputs)  # allocates the outputs once; every call rebinds them
        context, names, handle = self.context, self.output_names, self.stream.cuda_stream

        def run() -> None:
            bind_and_execute(context, device_inputs, names, lambda name, _: device_outputs[name], lambda t: t.data_ptr(), handle)

        return pinned_round_trip(self.stream, [inputs[n] for n in device_inputs], list(device_inputs.values()), run,
                                 lambda: list(device_outputs.values()))  # fmt: skip

    def _describe(self) -> dict:
        return {
            "tensorrt": getattr(self.trt, "__version__", "unknown"),
            "threads": self.torch.get_num_threads(),
            "engine_cache": self.cache_status,
            "engine_from_cache": self.from_cache,
            "engine_build_s": self.build_s,
            "engine_layers": self.engine.num_layers,
            "engine_size_mb": self.plan_path.stat().st_size / 1e6,
            "strongly_typed": self.build_settings["strongly_typed"],
            "workspace_mb": int(self.settings["workspace_mb"]),
            "optimization_level": self.build_settings["optimization_level"],
            "cuda_graph": bool(self.settings["cuda_graph"]),
        }

    def _close(self) -> None:
        self.context = self.engine = None
