"""Export a PyTorch module to ONNX, check the file, and prove it computes what PyTorch computes.

Dynamic axes come from the config's ``-1`` runtime dims (named by ``dims_names``); input and output names
come from the config, so every engine downstream speaks the same names.
"""

from __future__ import annotations

import hashlib
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from framework.config import ModelConfig
from framework.errors import ExportError, one_line

EXPORTERS = ("torchscript", "dynamo")
DEFAULT_OPSET = 17


@dataclass(frozen=True)
class ExportResult:
    path: Path
    seconds: float
    exporter: str
    opset: int
    node_count: int
    size_mb: float
    max_abs_error: float  # ONNX Runtime CPU vs PyTorch on the example input
    # The trace's own warnings (TracerWarning: a tensor turned into a Python value, so data-dependent control
    # flow is frozen at the example input), one line each with the file:line torch names; deduplicated.
    warnings: tuple[str, ...] = ()


def export_onnx(
    module,
    inputs: list[np.ndarray],
    config: ModelConfig,
    path: Path,
    *,
    exporter: str = "torchscript",
    opset: int = DEFAULT_OPSET,
    rtol: float = 1e-3,
    atol: float = 1e-4,
) -> ExportResult:
    """Export, run ``onnx.checker``, then compare ONNX Runtime CPU with PyTorch on ``inputs``.

    ``torchscript`` (the legacy tracer) is the default: on ResNet-18 it exports in 0.6 s against 6 s for
    ``dynamo`` and writes one self-contained file. ``dynamo`` is the exporter PyTorch develops further.
    """
    import onnx

    if exporter not in EXPORTERS:
        raise ExportError(f"unknown exporter {exporter!r}; allowed: {', '.join(EXPORTERS)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    seconds, trace_warnings = _export(module, inputs, config, path, exporter, opset)
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except Exception as exc:
        raise ExportError(f"{path}: onnx.checker rejected the exported graph: {one_line(exc)}") from exc
    worst = _check_against_pytorch(module, inputs, config, path, rtol, atol)
    model = onnx.load(str(path), load_external_data=False)
    return ExportResult(path=path, seconds=seconds, exporter=exporter, opset=opset, node_count=len(model.graph.node),
                        size_mb=onnx_size_mb(path), max_abs_error=worst, warnings=trace_warnings)  # fmt: skip


def _export(module, inputs: list[np.ndarray], config: ModelConfig, path: Path, exporter: str, opset: int) -> tuple[float, tuple[str, ...]]:
    """``torch.onnx.export`` with the config's names and dynamic axes; the seconds it took and the trace's warnings."""
    import torch

    dynamic_axes = {spec.name: spec.dynamic_axes for spec in config.inputs if spec.dynamic_axes}
    for out in config.outputs:
        axes = config.output_dynamic_axes(out)
        if axes:
            dynamic_axes[out.name] = axes
    args = tuple(torch.from_numpy(np.ascontiguousarray(x)) for x in inputs)
    kwargs = dict(input_names=config.input_names, output_names=config.output_names, dynamic_axes=dynamic_axes or None,
                  opset_version=opset, dynamo=exporter == "dynamo")  # fmt: skip
    if exporter == "dynamo":
        kwargs.update(external_data=False, verbose=False)
    start = time.perf_counter()
    try:
        with warnings.catch_warnings(record=True) as caught, torch.no_grad():
            warnings.simplefilter("always")  # recorded, not shown: each is kept or dropped by trace_warnings
            torch.onnx.export(module, args, str(path), **kwargs)
    except Exception as exc:
        raise ExportError(f"torch.onnx.export ({exporter}) failed for model {config.name!r}: {one_line(exc)}") from exc
    return time.perf_counter() - start, trace_warnings(caught)


def trace_warnings(caught: list[warnings.WarningMessage]) -> tuple[str, ...]:
    """The warnings about the trace (TracerWarning, and UserWarnings that speak of the trace), one line each
    as ``file:line: Category: message``, first occurrence kept; the exporters' deprecation chatter (and every
    other warning) is dropped: it is not the user's problem."""
    import torch

    kept: dict[str, None] = {}
    for w in caught:
        about_trace = issubclass(w.category, torch.jit.TracerWarning) or (issubclass(w.category, UserWarning) and "trace" in str(w.message).lower())
        if about_trace:
            kept.setdefault(f"{w.filename}:{w.lineno}: {one_line(w.message)}", None)
    return tuple(kept)


def _check_against_pytorch(module, inputs: list[np.ndarray], config: ModelConfig, path: Path, rtol: float, atol: float) -> float:
    """The largest absolute difference between ONNX Runtime CPU and PyTorch; ExportError beyond tolerance."""
    import torch

    from framework.torch_outputs import named_outputs

    with torch.no_grad():
        expected = named_outputs(module(*(torch.from_numpy(np.ascontiguousarray(x)) for x in inputs)), config.output_names)
    got = run_onnx_cpu(path, config, inputs)
    worst = 0.0
    for name, want in expected.items():
        have = got[name]
        if have.shape != want.shape:
            raise ExportError(f"{path}: output {name!r} has shape {have.shape} in ONNX, {want.shape} in PyTorch")
        err = float(np.max(np.abs(have.astype(np.float64) - want.astype(np.float64)))) if want.size else 0.0
        worst = max(worst, err)
        if not np.allclose(have, want, rtol=rtol, atol=atol, equal_nan=True):
            raise ExportError(
                f"{path}: output {name!r} differs from PyTorch on the example input (max abs error {err:.3g}, "
                f"rtol={rtol}, atol={atol}); the export is not faithful"
            )
    return worst


def model_digest(module, config: ModelConfig) -> str:
    """SHA-256 of the module's weights and buffers and of the config file: what makes two models the same."""
    import torch

    digest = hashlib.sha256(Path(config.path).read_bytes() if config.path else b"")
    for name, tensor in module.state_dict().items():
        digest.update(name.encode())
        digest.update(str(tensor.dtype).encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy())  # buffer, no copy
    return digest.hexdigest()


def export_settings(model_sha256: str, inputs: list[np.ndarray], exporter: str, opset: int = DEFAULT_OPSET) -> dict:
    """What an export depends on, for the artifact cache: weights, input shapes, exporter and library versions."""
    import importlib.metadata

    return {
        "model_sha256": model_sha256,
        "inputs": [[list(x.shape), str(x.dtype)] for x in inputs],
        "exporter": exporter,
        "opset": opset,
        "torch": importlib.metadata.version("torch"),
        "onnx": importlib.metadata.version("onnx"),
    }


def onnx_size_mb(path: Path) -> float:
    """Size of the graph file plus any external-data files written beside it."""
    files = [path] + [p for p in path.parent.glob(path.name + ".data")]
    return sum(p.stat().st_size for p in files) / 1e6


def run_onnx_cpu(path: Path, config: ModelConfig, inputs: list[np.ndarray]) -> dict[str, np.ndarray]:
    """One inference with ONNX Runtime's CPU provider: the export check's independent second opinion."""
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise ExportError("checking the ONNX export needs onnxruntime: pip install 'deploybench[cpu]' (or [gpu] on a GPU machine)") from exc
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    results = session.run(config.output_names, dict(zip(config.input_names, inputs)))
    return dict(zip(config.output_names, results))
