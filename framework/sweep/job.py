"""One experiment as a unit of work: a frozen ``Job`` that says everything a worker needs, as JSON.

The local child process, ``--in-process`` and any other executor run the same ``experiment.run(job)`` on the
same ``Job``. A job names files, not objects: the model's config and plugin class, the ONNX graphs, and the
npz the sweep wrote once per batch size with the inputs and the PyTorch fp32 reference outputs. A worker
loads the PyTorch module only when its engine asks for it (``ModelArtifacts.get_module``), so ONNX Runtime
and TensorRT workers never hold its weights; it imports the model's plugin file only for a PyTorch engine or
to read the model's dataset.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import io
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from framework.config import ModelConfig, load_config
from framework.errors import DeployBenchError
from framework.files import write_atomic
from framework.results.record import Experiment, ExportInfo, Result
from framework.settings import MeasureSettings


@dataclass(frozen=True)
class LoaderRef:
    """How a worker finds the model's plugin class: by file for ``models/*/load.py``, by module otherwise."""

    module: str
    file: str
    qualname: str

    @classmethod
    def of(cls, loader_class: type) -> LoaderRef:
        return cls(loader_class.__module__, inspect.getfile(loader_class), loader_class.__qualname__)

    def load_class(self) -> type:
        from framework.registry import import_plugin_file

        if self.module.startswith("deploybench_models."):
            module = import_plugin_file(Path(self.file))
        else:
            module = importlib.import_module(self.module)
        obj = module
        for part in self.qualname.split("."):
            obj = getattr(obj, part)
        return obj


@dataclass(frozen=True)
class Job:
    experiment: Experiment
    runtime: str
    device: str
    measure: MeasureSettings
    config_path: Path
    loader: LoaderRef
    graphs: dict[str, Path]  # ONNX graph name -> file (the engine picks its own)
    cache_dir: Path
    data_file: Path  # inputs and PyTorch references for this batch size (``references.References``)
    has_dataset: bool
    result_dir: Path
    model_dir: Path  # the results folder of the model: its lock and tables
    fingerprint: str
    run_id: str
    isolated: bool
    parameters: int | None = None
    load_s: float | None = None
    export: ExportInfo | None = None
    machine: dict = field(default_factory=dict)  # environment.fingerprint_fields of the sweep's machine
    extra: dict = field(default_factory=dict)  # free room for executors (node names, ...)
    tuning: dict | None = None  # with --tune: what the search tried and chose (``sweep.tune``)

    def pending_result(self) -> Result:
        """What the result says before anything is measured."""
        from framework.engines import engine_class

        m = self.measure
        return Result(self.experiment, self.runtime, self.device, fingerprint=self.fingerprint, run_id=self.run_id,
                      iterations=m.iterations, warmup=m.warmup, min_duration_s=m.min_duration, isolated=self.isolated,
                      parameters=self.parameters, load_s=self.load_s, export=self.export, machine=self.machine,
                      configuration=engine_class(self.experiment.engine).configuration(m.engine_options), tuning=self.tuning)  # fmt: skip

    def to_json(self) -> dict:
        data = asdict(self)
        data["experiment"] = self.experiment.to_dict()
        data["export"] = self.export.to_dict() if self.export else None
        return json.loads(json.dumps(data, default=str))  # paths as strings, tuples as lists

    @classmethod
    def from_json(cls, data: dict) -> Job:
        return cls(**{
            **data,
            "experiment": Experiment.from_dict(data["experiment"]),
            "measure": MeasureSettings(**data["measure"]),
            "loader": LoaderRef(**data["loader"]),
            "config_path": Path(data["config_path"]), "cache_dir": Path(data["cache_dir"]),
            "data_file": Path(data["data_file"]), "result_dir": Path(data["result_dir"]), "model_dir": Path(data["model_dir"]),
            "graphs": {k: Path(v) for k, v in data["graphs"].items()},
            "export": ExportInfo.from_dict(data["export"]),
        })  # fmt: skip

    def write(self, path: Path) -> Path:
        write_atomic(path, json.dumps(self.to_json(), indent=2) + "\n")
        return path

    @classmethod
    def read(cls, path: Path) -> Job:
        return cls.from_json(json.loads(Path(path).read_text()))


def write_shape_data(path: Path, inputs: list[np.ndarray], reference: dict, varied_reference: dict, dataset_reference: dict) -> Path:
    """Inputs (batch of one) and the reference outputs of one batch size (and over the dataset, if any)."""
    arrays = {f"input:{i}": x for i, x in enumerate(inputs)}
    arrays.update({f"dataset_reference:{k}": v for k, v in dataset_reference.items()})
    arrays.update({f"reference:{k}": v for k, v in reference.items()})
    arrays.update({f"varied_reference:{k}": v for k, v in varied_reference.items()})
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    write_atomic(path, buffer.getvalue())
    return path


@dataclass(frozen=True)
class ShapeData:
    """``write_shape_data``'s file read back."""

    inputs: list[np.ndarray]
    reference: dict[str, np.ndarray]
    varied_reference: dict[str, np.ndarray]
    dataset_reference: dict[str, np.ndarray] | None

    @classmethod
    def read(cls, path: Path, config: ModelConfig, has_dataset: bool) -> ShapeData:
        with np.load(path) as data:

            def outputs(prefix: str) -> dict[str, np.ndarray]:
                return {n: data[f"{prefix}:{n}"] for n in config.output_names}

            return cls([data[f"input:{i}"] for i in range(len(config.inputs))], outputs("reference"), outputs("varied_reference"),
                       outputs("dataset_reference") if has_dataset else None)  # fmt: skip


@functools.lru_cache(maxsize=4)
def _module(loader: LoaderRef, config_path: Path, shapes: tuple, edited: tuple, attention: str = "") -> object:
    """The PyTorch module, loaded once per process (``--in-process`` runs many jobs in one); ``attention``: one
    of the loader's ``attention_implementations`` ("" its default)."""
    plugin = loader.load_class()(load_config(config_path), [tuple(s) for s in shapes])
    if attention:
        offered = type(plugin).attention_implementations
        if attention not in offered:
            raise DeployBenchError(f"--option attention={attention}: model {plugin.name!r} offers "
                                   f"{', '.join(offered) if offered else 'no choice of attention implementation'}")  # fmt: skip
        plugin.attention = attention
    return plugin.load_pytorch_module().eval()


def module_factory(job: Job):
    # Keyed by when the plugin and config files last changed too: an edited model is loaded anew.
    edited = tuple(os.stat(path).st_mtime_ns for path in (job.loader.file, job.config_path) if os.path.exists(path))
    return lambda attention="": _module(job.loader, job.config_path, job.experiment.example_shapes, edited, attention)


def load_dataset(job: Job, config: ModelConfig):
    """The model's labelled data (the plugin's ``load_dataset``), only for models that have one."""
    if not job.has_dataset:
        return None
    return job.loader.load_class()(config, [tuple(s) for s in job.experiment.example_shapes]).load_dataset()
