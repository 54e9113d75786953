"""Find model plugins: every ``models/*/load.py``, extra folders, and the ``deploybench.models`` entry points.

``@register_model`` only marks a class; discovery imports each plugin module and collects the marked classes
defined there. There is no global registry to reset: each ``discover()`` call builds a fresh ``ModelRegistry``.
A plugin that fails to import is kept as an error (listed by ``deploybench list``) so one broken folder does
not hide the others.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import importlib.util
import inspect
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

from framework.config import ModelConfig, load_config
from framework.errors import ConfigError, RegistryError
from framework.loader import ModelLoader

ENTRY_POINT_GROUP = "deploybench.models"
_MARK = "__deploybench_model__"


def register_model(cls: type) -> type:
    """Class decorator that makes a ``ModelLoader`` subclass discoverable."""
    if not (isinstance(cls, type) and issubclass(cls, ModelLoader)):
        raise RegistryError(f"@register_model expects a subclass of framework.ModelLoader, got {cls!r}")
    if not isinstance(getattr(cls, "name", None), str) or not cls.name:
        raise RegistryError(f"{cls.__qualname__} in {inspect.getfile(cls)}: set a non-empty class attribute `name`")
    setattr(cls, _MARK, True)
    return cls


def default_models_dirs() -> list[Path]:
    """The project's own ``models/`` folder, and ``./models`` when run from another checkout."""
    candidates = [Path(__file__).resolve().parent.parent / "models", Path.cwd() / "models"]
    unique: list[Path] = []
    for c in candidates:
        if c.is_dir() and c.resolve() not in unique:
            unique.append(c.resolve())
    return unique


@dataclass(frozen=True)
class RegisteredModel:
    name: str
    loader_class: type[ModelLoader]
    source: str  # the file (or entry point) that defined it, for error messages

    @property
    def config_path(self) -> Path:
        return Path(inspect.getfile(self.loader_class)).resolve().parent / self.loader_class.config_file

    def load_config(self) -> ModelConfig:
        config = load_config(self.config_path)
        if config.name != self.name:
            raise ConfigError(config.path, "name", f"is {config.name!r}, but the loader in {self.source} registers {self.name!r}")
        return config

    def create(self, example_shapes: list[tuple[int, ...]] | None = None) -> ModelLoader:
        """Load and validate the config, then build the loader for these example shapes."""
        config = self.load_config()
        if example_shapes is not None and len(example_shapes) != len(config.inputs):
            raise RegistryError(f"model {self.name!r} has {len(config.inputs)} inputs, but {len(example_shapes)} example shapes were given")
        return self.loader_class(config, example_shapes)


@dataclass
class ModelRegistry:
    models: dict[str, RegisteredModel] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)  # plugins that could not be imported, one line each

    def add(self, entry: RegisteredModel) -> None:
        if entry.name in self.models:
            other = self.models[entry.name]
            raise RegistryError(f"two loaders register the model name {entry.name!r}: {other.source} and {entry.source}")
        self.models[entry.name] = entry

    def get(self, name: str) -> RegisteredModel:
        if name not in self.models:
            known = ", ".join(sorted(self.models)) or "none"
            broken = "".join(f"\n  could not load: {e}" for e in self.errors)
            raise RegistryError(f"unknown model {name!r}; known models: {known}{broken}")
        return self.models[name]

    def names(self) -> list[str]:
        return sorted(self.models)


def discover(models_dirs: list[Path] | None = None, *, use_default_dirs: bool = True, entry_points: bool = True) -> ModelRegistry:
    """Build a registry from the default folders, ``models_dirs`` and installed entry points."""
    registry = ModelRegistry()
    dirs = (default_models_dirs() if use_default_dirs else []) + [Path(d).resolve() for d in models_dirs or []]
    seen: set[Path] = set()
    for folder in dirs:
        if not folder.is_dir():
            raise RegistryError(f"models folder {folder} does not exist")
        for load_py in sorted(folder.glob("*/load.py")):
            if load_py in seen:
                continue
            seen.add(load_py)
            _collect(registry, str(load_py), lambda p=load_py: import_plugin_file(p))
    if entry_points:
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            _collect(registry, f"entry point {ep.name} = {ep.value}", lambda ep=ep: _entry_point_module(ep))
    return registry


def _collect(registry: ModelRegistry, source: str, load_module) -> None:
    try:
        module = load_module()
    except Exception as exc:  # a plugin's own bug: keep it as data, not a crash of the whole listing
        last = traceback.format_exception_only(type(exc), exc)[-1].strip()
        registry.errors.append(f"{source}: import failed: {last}")
        return
    classes = [obj for obj in vars(module).values() if isinstance(obj, type) and obj.__dict__.get(_MARK) and obj.__module__ == module.__name__]
    if not classes:
        registry.errors.append(f"{source}: no class decorated with @register_model")
    for cls in classes:
        registry.add(RegisteredModel(cls.name, cls, source))


def import_plugin_file(path: Path) -> ModuleType:
    # A unique, stable module name per file, so two folders may both hold a load.py. Executed afresh by each
    # discover(), so a long-lived process (a notebook, the tests) sees an edited load.py.
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:8]
    name = f"deploybench_models.{path.parent.name.replace('-', '_')}_{digest}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def _entry_point_module(ep: importlib.metadata.EntryPoint) -> ModuleType:
    obj = ep.load()
    return obj if isinstance(obj, ModuleType) else importlib.import_module(obj.__module__)
