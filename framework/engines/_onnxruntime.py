"""What the ONNX Runtime engines share: session creation with proof that the requested provider runs, and
the CUDA IO-binding base that the CUDA and TensorRT execution-provider engines both run on.

ONNX Runtime only warns and runs on CPU when a requested execution provider cannot load (missing CUDA or
TensorRT libraries). A figure measured that way would be a lie, so the session's active providers are
checked and a mismatch raises ``ProviderFallbackError``.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from typing import ClassVar

import numpy as np

from framework.config import DYNAMIC, ModelConfig
from framework.engines._cuda import cuda_unavailable_reason, pinned_round_trip
from framework.engines.base import Engine
from framework.errors import DeployBenchError, ProviderFallbackError
from framework.torch_outputs import numpy_dtype, torch_dtype

ORT_NUMPY_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
                    "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(int8)": np.int8,
                    "tensor(uint8)": np.uint8, "tensor(bool)": np.bool_}  # fmt: skip


def create_verified_session(onnx_path, providers: list, session_options=None):
    """An ``InferenceSession`` whose first active provider is the one asked for, or a loud error.

    ``providers`` is ONNX Runtime's list: names or ``(name, options)`` pairs, most preferred first.
    """
    import onnxruntime as ort

    wanted = providers[0][0] if isinstance(providers[0], tuple) else providers[0]
    available = ort.get_available_providers()
    if wanted not in available:
        raise ProviderFallbackError(f"{wanted} is not in this onnxruntime build ({ort.__version__}); available: {', '.join(available)}")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        session = ort.InferenceSession(str(onnx_path), sess_options=session_options, providers=providers)
    active = session.get_providers()
    if not active or active[0] != wanted:
        said = "; ".join(str(w.message) for w in caught)
        raise ProviderFallbackError(
            f"requested {wanted}, but ONNX Runtime is running {active} (it falls back silently when a provider "
            f"fails to load; check its CUDA/TensorRT libraries){': ' + said if said else ''}"
        )
    return session


def _input_dim_sizes(config: ModelConfig, input_shapes: dict[str, Sequence[int]]) -> dict[str, set[int]]:
    """Dynamic input dim name (e.g. batch_size) -> the sizes the actual inputs give it."""
    sizes: dict[str, set[int]] = {}
    for spec in config.inputs:
        shape = input_shapes.get(spec.name)
        for axis, dim_name in spec.dynamic_axes.items():
            if shape is not None and axis < len(shape):
                sizes.setdefault(dim_name, set()).add(int(shape[axis]))
    return sizes


def _resolve_dim(config: ModelConfig, index: int, dim: int, ort_dim, sizes: dict[str, set[int]]) -> int:
    """One output dim: ONNX Runtime's static size, else the input dim it is named after, else the config's."""
    spec = config.outputs[index]
    if isinstance(ort_dim, int) and ort_dim >= 0:
        return ort_dim
    dim_name = spec.dims_names[dim]
    for candidate in (dim_name, ort_dim):  # the config's name first, then ONNX Runtime's symbolic one
        if isinstance(candidate, str) and candidate in sizes:
            if len(sizes[candidate]) > 1:
                raise DeployBenchError(
                    f"output {spec.name!r} dim {dim} ({candidate}) is named after a dynamic input dim to which the inputs "
                    f"give different sizes {sorted(sizes[candidate])} ({config.path}: outputs[{index}].shape.dims_names[{dim}])"
                )
            return next(iter(sizes[candidate]))
    if spec.runtime[dim] != DYNAMIC:
        return spec.runtime[dim]
    raise DeployBenchError(
        f"cannot size output {spec.name!r} dim {dim} ({dim_name}): ONNX Runtime gives {ort_dim!r}, and the config "
        f"neither fixes it nor names it after a dynamic input dim ({', '.join(sorted(sizes)) or 'none'}) "
        f"({config.path}: outputs[{index}].shape.runtime[{dim}])"
    )


def resolve_output_shapes(
    config: ModelConfig, ort_outputs: Iterable[tuple[str, Sequence, str]], input_shapes: dict[str, Sequence[int]]
) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """``{output: (shape, numpy dtype)}`` for the config's outputs, in its order, without running anything.

    ``ort_outputs`` is ONNX Runtime's metadata (``(o.name, o.shape, o.type)`` of ``session.get_outputs()``:
    static dims as ints, symbolic ones as strings or None); a dim it leaves open takes the size of the input
    dim it is named after in the config (batch_size), else the config's fixed size. Sizing buffers this way
    needs no PyTorch module and no ORT run (which would capture the CUDA graph on the wrong buffers).
    """
    metadata = {name: (shape, kind) for name, shape, kind in ort_outputs}
    sizes = _input_dim_sizes(config, input_shapes)
    resolved = {}
    for index, spec in enumerate(config.outputs):
        if spec.name not in metadata:
            raise DeployBenchError(f"output {spec.name!r} ({config.path}: outputs[{index}].name) is not an output of "
                                   f"the ONNX graph, whose outputs are {sorted(metadata)}")  # fmt: skip
        ort_shape, kind = metadata[spec.name]
        ort_shape = list(ort_shape) if ort_shape is not None else [None] * len(spec.runtime)
        if len(ort_shape) != len(spec.runtime):
            raise DeployBenchError(f"output {spec.name!r}: the ONNX graph gives it {len(ort_shape)} dims {ort_shape}, the "
                                   f"config {len(spec.runtime)} ({config.path}: outputs[{index}].shape.runtime)")  # fmt: skip
        if kind not in ORT_NUMPY_DTYPES:
            raise DeployBenchError(f"output {spec.name!r} has ONNX type {kind}, which this engine cannot bind "
                                   f"(it binds {', '.join(ORT_NUMPY_DTYPES)})")  # fmt: skip
        shape = tuple(_resolve_dim(config, index, dim, d, sizes) for dim, d in enumerate(ort_shape))
        resolved[spec.name] = (shape, np.dtype(ORT_NUMPY_DTYPES[kind]))
    return resolved


class OnnxRuntimeEngine(Engine):
    """One ONNX Runtime session on the exported graph. Subclasses choose the execution provider."""

    runtime = "onnxruntime"
    needs_onnx = True
    provider: ClassVar[str]

    @classmethod
    def availability(cls) -> str | None:
        try:
            import onnxruntime as ort
        except ImportError:
            return "onnxruntime is not installed (pip install 'deploybench[cpu]', or [gpu] on a GPU machine)"
        if cls.provider not in ort.get_available_providers():
            return f"{cls.provider} is not in this onnxruntime build ({', '.join(ort.get_available_providers())})"
        return None

    def provider_list(self) -> list:
        return [self.provider]

    def session_options(self):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = self.threads  # the calling thread included; host threads for the GPU EPs
        return options

    def _load(self) -> None:
        self.output_names = self.config.output_names
        self.session = create_verified_session(self.onnx_path, self.provider_list(), self.session_options())

    def _infer(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(zip(self.output_names, self.session.run(self.output_names, inputs)))

    def _make_step(self, inputs: dict[str, np.ndarray]):
        run, names = self.session.run, self.output_names
        return lambda: run(names, inputs)

    def _describe(self) -> dict:
        import onnxruntime as ort

        threads = self.session.get_session_options().intra_op_num_threads  # read back from the session
        return {"onnxruntime": ort.__version__, "providers": self.session.get_providers(), "threads": threads}

    def _close(self) -> None:
        self.session = None


class OnnxRuntimeCUDABindingEngine(OnnxRuntimeEngine):
    """ONNX Runtime on the GPU through IO binding, on a stream the framework owns (CUDA and TensorRT EPs).

    Buffers are torch CUDA tensors bound by address; ORT computes on the framework's torch stream
    (``user_compute_stream``), so CUDA events on that stream bracket exactly its work. Output buffers are
    sized by ``resolve_output_shapes``. Subclasses set ``options`` with ``prefer_nhwc`` and ``cuda_graph``.
    """

    device = "cuda"
    device_step_returns_early = False  # run_with_iobinding synchronises: measured on the H100, "enqueue" = device time

    @classmethod
    def availability(cls) -> str | None:
        return cuda_unavailable_reason() or super().availability()

    def cuda_provider_options(self) -> dict:
        """The CUDA EP's options. cuDNN algorithm search is EXHAUSTIVE. No device_id: 0 is the default, and
        ONNX Runtime >= 1.26 logs "No registered plugin EP device found" for every session given one."""
        return {
            "cudnn_conv_algo_search": "EXHAUSTIVE",
            "prefer_nhwc": "1" if self.settings["prefer_nhwc"] else "0",
            "enable_cuda_graph": "1" if self.settings["cuda_graph"] else "0",
            "user_compute_stream": str(self.stream.cuda_stream),
        }

    def _load(self) -> None:
        import torch

        self.torch = torch
        self.stream = torch.cuda.Stream()  # before the session: its provider options name this stream
        self._io = None
        super()._load()

    def _binding_for(self, inputs: dict[str, np.ndarray]) -> dict:
        """The one IO binding of this session, on device buffers that never move; ``inputs`` copied in.

        Every path (``infer``, host step, device step) goes through it, because with ``cuda_graph`` ORT captures
        its graph on the first run and replays it on the same addresses: a plain ``session.run`` first would
        capture ORT's internal buffers instead, and later runs would replay on stale inputs.
        """
        shapes = {n: tuple(inputs[n].shape) for n in self.config.input_names}
        if self._io is None or self._io["shapes"] != shapes:
            self._io = self._bind(inputs, shapes)
        else:
            for n, t in self._io["in"].items():
                t.copy_(self.torch.from_numpy(inputs[n]))
        self.torch.cuda.synchronize()
        return self._io

    def _bind(self, inputs: dict[str, np.ndarray], shapes: dict[str, tuple]) -> dict:
        torch = self.torch
        dev_in = {n: torch.from_numpy(inputs[n]).to("cuda") for n in self.config.input_names}
        metadata = [(o.name, o.shape, o.type) for o in self.session.get_outputs()]
        dev_out = {n: torch.empty(shape, dtype=torch_dtype(dtype), device="cuda")
                   for n, (shape, dtype) in resolve_output_shapes(self.config, metadata, shapes).items()}  # fmt: skip
        binding = self.session.io_binding()
        for name, t in {**dev_in, **dev_out}.items():
            bind = binding.bind_input if name in dev_in else binding.bind_output
            bind(name, "cuda", 0, numpy_dtype(t.dtype), tuple(t.shape), t.data_ptr())
        session = self.session
        return {"shapes": shapes, "in": dev_in, "out": dev_out, "run": lambda: session.run_with_iobinding(binding)}

    def _infer(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        io = self._binding_for(inputs)
        with self.torch.cuda.stream(self.stream):
            io["run"]()
        self.stream.synchronize()
        return {n: io["out"][n].cpu().numpy() for n in self.output_names}

    def _make_device_step(self, inputs: dict[str, np.ndarray]):
        return self._binding_for(inputs)["run"], self.stream

    def _make_step(self, inputs: dict[str, np.ndarray]):
        """Pinned host input -> bound device buffers -> run -> pinned host output, then synchronise."""
        io = self._binding_for(inputs)
        return pinned_round_trip(self.stream, [inputs[n] for n in io["in"]], list(io["in"].values()), io["run"],
                                 lambda: list(io["out"].values()))  # fmt: skip

    def _close(self) -> None:
        self._io = None  # the bound device buffers
        super()._close()
