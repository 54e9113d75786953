"""TensorRT logic that needs no TensorRT, shared by the native and the ONNX Runtime TensorRT engines:
profiles from the config, the settings a built engine depends on (``framework.artifacts.cache`` compares
them before reuse), and the one order in which an execution context is given shapes and addresses.

Kept apart from the engines so that it is tested on machines where TensorRT cannot be installed.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from framework.artifacts.cache import file_sha256
from framework.config import ModelConfig
from framework.errors import ConfigError, DeployBenchError

Shape = tuple[int, ...]


def profile_shapes(config: ModelConfig) -> dict[str, tuple[Shape, Shape, Shape]] | None:
    """``{input: (min, opt, max)}`` from the config; None when every dim is fixed (a static engine).

    A fixed input inside a dynamic model gets min = opt = max = its runtime shape.
    """
    if not any(spec.dynamic_axes for spec in config.inputs):
        return None
    shapes = {}
    for i, spec in enumerate(config.inputs):
        if spec.optimization is not None:
            shapes[spec.name] = (spec.optimization.min, spec.optimization.opt, spec.optimization.max)
        elif not spec.dynamic_axes:
            shapes[spec.name] = (spec.runtime, spec.runtime, spec.runtime)
        else:
            raise ConfigError(
                config.path, f"inputs[{i}].shapes.optimization",
                f"required for TensorRT: runtime {list(spec.runtime)} has dynamic dims {sorted(spec.dynamic_axes)}",
            )  # fmt: skip
    return shapes


def check_in_profile(config: ModelConfig, shapes: dict[str, Shape]) -> None:
    """Refuse, before TensorRT does with a vaguer message, a shape the engine was not built for."""
    profiles = profile_shapes(config)
    for i, spec in enumerate(config.inputs):
        shape = tuple(shapes[spec.name])
        low, _, high = profiles[spec.name] if profiles else (spec.runtime, spec.runtime, spec.runtime)
        for dim, (lo, got, hi) in enumerate(zip(low, shape, high)):
            if not lo <= got <= hi:
                raise DeployBenchError(
                    f"input {spec.name!r} shape {shape} is outside the TensorRT profile: dim {dim} "
                    f"({spec.dims_names[dim]}) is {got}, the profile allows {lo}..{hi} "
                    f"({config.path}: inputs[{i}].shapes.optimization)"
                )


def ort_profile_options(config: ModelConfig) -> dict[str, str]:
    """The TensorRT execution provider's explicit profile: ``trt_profile_min_shapes`` etc."""
    profiles = profile_shapes(config)
    if profiles is None:
        return {}
    options = {}
    for index, key in enumerate(("min", "opt", "max")):
        options[f"trt_profile_{key}_shapes"] = ",".join(f"{name}:{'x'.join(map(str, shapes[index]))}" for name, shapes in profiles.items())
    return options


def build_settings(
    *, onnx_path: Path, precision: str, config: ModelConfig, workspace_bytes: int, strongly_typed: bool,
    trt_version: str, gpu_name: str, compute_capability: str, optimization_level: int = 3,
) -> dict:  # fmt: skip
    """What a serialized engine depends on; stored beside it and compared before reuse."""
    profiles = profile_shapes(config)
    return {
        "tensorrt": trt_version,
        "gpu": gpu_name,
        "compute_capability": compute_capability,
        "onnx_sha256": file_sha256(onnx_path),
        "precision": precision,
        "optimization_level": optimization_level,
        "profile": {k: [list(s) for s in v] for k, v in profiles.items()} if profiles else "static",
        "workspace_bytes": workspace_bytes,
        "strongly_typed": strongly_typed,
    }


def bind_and_execute(
    context, input_buffers: dict[str, object], output_names: list[str],
    allocate: Callable[[str, Shape], object], address: Callable[[object], int], stream_handle: int,
) -> dict[str, object]:  # fmt: skip
    """Run one inference through the name-based API, in the only safe order.

    1. ``set_input_shape`` for EVERY input (not only the dynamic ones), so no shape is left unspecified;
    2. ask TensorRT which shapes are still missing (``infer_shapes``) and refuse to go on if any are;
    3. read each output's now-resolved shape and allocate (or reuse) its buffer;
    4. ``set_tensor_address`` for every input and output;
    5. ``execute_async_v3`` on the stream.
    "IExecutionContext::enqueueV3: Not all shapes are specified" cannot happen: step 2 stops it first.
    """
    for name, buffer in input_buffers.items():
        if not context.set_input_shape(name, tuple(buffer.shape)):
            raise DeployBenchError(f"TensorRT refused shape {tuple(buffer.shape)} for input {name!r}")
    missing = context.infer_shapes()
    if missing:
        raise DeployBenchError(f"TensorRT input shapes still unspecified: {list(missing)}")
    outputs = {name: allocate(name, tuple(context.get_tensor_shape(name))) for name in output_names}
    for name, buffer in {**input_buffers, **outputs}.items():
        if not context.set_tensor_address(name, address(buffer)):
            raise DeployBenchError(f"TensorRT refused the address of tensor {name!r}")
    if not context.execute_async_v3(stream_handle):
        raise DeployBenchError("TensorRT execute_async_v3 reported failure")
    return outputs
