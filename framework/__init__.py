"""deploybench: measure a PyTorch model in every runtime a machine has.

Importing the package pulls in no vendor library (torch, onnxruntime, tensorrt): each is imported by the
one module that uses it, when it is used.
"""

from framework.config import ModelConfig, load_config
from framework.errors import ConfigError, DeployBenchError, EngineUnavailable, ExportError, RegistryError
from framework.loader import ModelLoader, default_preprocess
from framework.registry import discover, register_model

__all__ = [
    "ConfigError",
    "DeployBenchError",
    "EngineUnavailable",
    "ExportError",
    "ModelConfig",
    "ModelLoader",
    "RegistryError",
    "default_preprocess",
    "discover",
    "load_config",
    "register_model",
]
