"""What every ONNX Runtime engine shares: session creation and proof that the requested provider runs.

ONNX Runtime only warns and runs on CPU when a requested execution provider cannot load (missing CUDA or
TensorRT libraries). A figure measured that way would be a lie, so the session's active providers are
checked and a mismatch raises ``ProviderFallbackError``.
"""

from __future__ import annotations

import warnings
from typing import ClassVar

import numpy as np

from framework.engines.base import Engine
from framework.errors import ProviderFallbackError


def create_verified_session(onnx_path, providers: list, session_options=None):
    """An ``InferenceSession`` whose first active provider is the one asked for, or a loud error.

    ``providers`` is ONNX Runtime's list: names or ``(name, options)`` pairs, most preferred first.
    """
    import onnxruntime as ort

    wanted = providers[0][0] if isinstance(providers[0], tuple) else providers[0]
    available = ort.get_available_providers()
    if wanted not in available:
        raise ProviderFallbackError(
            f"{wanted} is not in this onnxruntime build ({ort.__version__}); available: {', '.join(available)}"
        )
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
        return options

    def load(self) -> None:
        self.session = create_verified_session(self.onnx_path, self.provider_list(), self.session_options())
        self.output_names = self.config.output_names

    def infer(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(zip(self.output_names, self.session.run(self.output_names, inputs)))

    def make_step(self, inputs: dict[str, np.ndarray]):
        run, names = self.session.run, self.output_names
        return lambda: run(names, inputs)

    def describe(self) -> dict:
        import onnxruntime as ort

        return {"onnxruntime": ort.__version__, "providers": self.session.get_providers()}

    def close(self) -> None:
        self.session = None
