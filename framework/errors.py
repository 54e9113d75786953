"""One exception hierarchy for the whole framework; only the CLI turns these into exit codes."""

from __future__ import annotations


class DeployBenchError(Exception):
    """Base class of every error the framework raises on purpose."""


class ConfigError(DeployBenchError):
    """A model's config.yaml is malformed. The message names the file, the field path and the problem."""

    def __init__(self, path: object, field: str, problem: str) -> None:
        self.path = str(path)
        self.field = field
        self.problem = problem
        where = f"{self.path}: {field}: " if field else f"{self.path}: "
        super().__init__(where + problem)


class RegistryError(DeployBenchError):
    """A model plugin could not be found, imported or registered."""


class ExportError(DeployBenchError):
    """Export to ONNX failed, or the exported graph disagrees with PyTorch."""


class EngineUnavailable(DeployBenchError):
    """This machine cannot run the engine (library missing, no GPU, ...). The message says why."""


class ProviderFallbackError(EngineUnavailable):
    """ONNX Runtime silently fell back to another execution provider than the one requested."""


def one_line(exc: BaseException, limit: int = 500) -> str:
    """``ExcType: message`` on one line, for result records and progress output."""
    text = " ".join(str(exc).split()) or "(no message)"
    return f"{type(exc).__name__}: {text[:limit]}"


class ResultFileError(DeployBenchError):
    """A saved result is unreadable, foreign, or of a format this version cannot read. Names the file."""
