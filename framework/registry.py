"""Find model plugins: every ``models/*/load.py``, extra folders, and the ``deploybench.models`` entry points.

``@register_model`` only marks a class; discovery imports each plugin module and collects the marked classes
defined there. There is no global registry to reset: each ``discover()`` call builds a fresh ``ModelRegistry``.
A plugin that fails to import is kept as an error (listed by ``deploybench list``) naming the file and line at
fault, so one broken folder does not hide the others; likewise a model name registered twice fails only that name.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import importlib.util
import inspect
import os
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

from framework.config import ModelConfig, load_config
from framework.errors import ConfigError, RegistryError, one_line
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
    errors: list[str] = field(default_factory=list)  # plugins that could not be imported, name conflicts: one line each
    broken: dict[str, str] = field(default_factory=dict)  # the name a failed plugin would likely register (its folder) -> its error
    conflicts: dict[str, list[RegisteredModel]] = field(default_factory=dict)  # names two or more loaders register

    def add(self, entry: RegisteredModel) -> None:
        """Register ``entry``; a name registered twice is withdrawn (neither loader is right) and kept as an error."""
        if entry.name in self.conflicts:
            old = conflict_message(entry.name, self.conflicts[entry.name])
            self.conflicts[entry.name].append(entry)
            self.errors[self.errors.index(old)] = conflict_message(entry.name, self.conflicts[entry.name])
        elif entry.name in self.models:
            self.conflicts[entry.name] = [self.models.pop(entry.name), entry]
            self.errors.append(conflict_message(entry.name, self.conflicts[entry.name]))
        else:
            self.models[entry.name] = entry

    def get(self, name: str) -> RegisteredModel:
        if name in self.conflicts:
            raise RegistryError(conflict_message(name, self.conflicts[name]))
        if name in self.models:
            return self.models[name]
        if name in self.broken:
            raise RegistryError(self.broken[name])
        known = ", ".join(sorted(self.models)) or "none"
        broken = "".join(f"; could not load: {e}" for e in self.errors)  # one line: the CLI prints one error line
        raise RegistryError(f"unknown model {name!r}; known models: {known}{broken}")

    def names(self) -> list[str]:
        return sorted(self.models)


def conflict_message(name: str, entries: list[RegisteredModel]) -> str:
    sources = [e.source for e in entries]
    count = "two" if len(sources) == 2 else str(len(sources))
    return f"{count} loaders register the model name {name!r}: {', '.join(sources[:-1])} and {sources[-1]}"


def discover(models_dirs: list[Path] | None = None, *, use_default_dirs: bool = True, entry_points: bool = True) -> ModelRegistry:
    """Build a registry from the default folders, ``models_dirs`` and installed entry points."""
    registry = ModelRegistry()
    explicit = [Path(d).resolve() for d in models_dirs or []]
    dirs = (default_models_dirs() if use_default_dirs else []) + explicit
    seen: set[Path] = set()
    for folder in dirs:
        plugins = sorted(folder.glob("*/load.py")) if folder.is_dir() else []
        if folder in explicit:
            check_models_dir(folder, plugins)
        for load_py in plugins:
            if load_py in seen:
                continue
            seen.add(load_py)
            _collect(registry, str(load_py), lambda p=load_py: import_plugin_file(p), load_py.parent.name, load_py)
    if entry_points:
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            _collect(registry, f"entry point {ep.name} = {ep.value}", lambda ep=ep: _entry_point_module(ep), ep.name, _package_dir(ep))
    return registry


def check_models_dir(folder: Path, plugins: list[Path]) -> None:
    """A folder given with --models-dir must exist and hold ``<model>/load.py`` files: name it if not."""
    if not folder.exists():
        raise RegistryError(f"models folder {folder} does not exist")
    if not folder.is_dir():
        raise RegistryError(f"models folder {folder} is not a folder: give the folder that holds <model>/load.py")
    if not os.access(folder, os.R_OK | os.X_OK):
        raise RegistryError(f"models folder {folder} cannot be read (permission denied)")
    if not plugins:
        hint = f": it holds a load.py itself, so give its parent folder {folder.parent}" if (folder / "load.py").is_file() else ""
        raise RegistryError(f"models folder {folder} holds no model plugin (no {folder}/<model>/load.py){hint}")


def _collect(registry: ModelRegistry, source: str, load_module, key: str, within: Path | None) -> None:
    """Import one plugin and register its marked classes; a failure is kept, naming ``source`` and the line at fault."""
    try:
        module = load_module()
    except (Exception, SystemExit) as exc:  # a plugin's own bug: keep it as data, not a crash of the whole listing
        error = import_failure(source, exc, within)
        registry.errors.append(error)
        registry.broken.setdefault(key, error)
        return
    classes = [obj for obj in vars(module).values() if isinstance(obj, type) and obj.__dict__.get(_MARK) and obj.__module__ == module.__name__]
    if not classes:
        registry.errors.append(f"{source}: no class decorated with @register_model")
        registry.broken.setdefault(key, registry.errors[-1])
    for cls in classes:
        registry.add(RegisteredModel(cls.name, cls, source))


def import_failure(source: str, exc: BaseException, within: Path | None) -> str:
    """``<load.py>:<line>: import failed: <ExcType>: <message>``: the line is the deepest frame inside the plugin's
    file (or package folder, for an entry point), or where a SyntaxError is; a SyntaxError elsewhere is located too."""
    if isinstance(exc, SyntaxError):
        detail = f"{type(exc).__name__}: {' '.join(str(exc.msg or '(no message)').split())}"
        if exc.filename and exc.lineno and not _inside(exc.filename, within):
            detail += f" ({exc.filename}:{exc.lineno})"
    else:
        detail = one_line(exc)
    found = _deepest_line(exc, within)
    if found is None:
        return f"{source}: import failed: {detail}"
    filename, line = found
    if filename == source:
        return f"{source}:{line}: import failed: {detail}"
    return f"{source}: import failed: {detail} (at {filename}:{line})"


def _deepest_line(exc: BaseException, within: Path | None) -> tuple[str, int] | None:
    if within is None:
        return None
    if isinstance(exc, SyntaxError) and exc.filename and exc.lineno and _inside(exc.filename, within):
        return exc.filename, exc.lineno
    found = None
    for frame, line in traceback.walk_tb(exc.__traceback__):
        if _inside(frame.f_code.co_filename, within):
            found = frame.f_code.co_filename, line
    return found


def _inside(filename: str, within: Path | None) -> bool:
    if within is None or not filename or filename.startswith("<"):
        return False
    path = Path(filename).resolve()
    return path == within or within in path.parents


def _package_dir(ep: importlib.metadata.EntryPoint) -> Path | None:
    """The folder (or file) of an entry point's top-level package, found without importing it."""
    try:
        spec = importlib.util.find_spec(ep.value.split(":")[0].strip().split(".")[0])
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin or not spec.has_location:
        return None
    origin = Path(spec.origin).resolve()
    return origin.parent if spec.submodule_search_locations else origin


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
