"""The contract a model plugin implements, and the default preprocessing for images.

A plugin is a class in ``models/<name>/load.py`` decorated with ``@register_model``. The framework sets
``config`` and ``example_shapes`` on the instance before it asks for inputs, so ``load_example_inputs()``
keeps the plain no-argument signature while following the experiment's example shape.
"""

from __future__ import annotations

import numpy as np

from framework.config import InputSpec, ModelConfig
from framework.errors import ConfigError, DeployBenchError


class ModelLoader:
    """Base class of model plugins. Subclasses set ``name`` and implement ``load_pytorch_module``."""

    name: str = ""
    config_file: str = "config.yaml"  # relative to the folder holding the plugin's source file
    # Attention implementations ``load_pytorch_module`` can build (transformers' ``attn_implementation`` names),
    # the default first. PyTorch engines take ``--option attention=NAME``; ``--tune`` tries the others.
    attention_implementations: tuple[str, ...] = ()

    def __init__(self, config: ModelConfig, example_shapes: list[tuple[int, ...]] | None = None) -> None:
        self.config = config
        self.example_shapes = example_shapes or [spec.example for spec in config.inputs]
        self.attention: str | None = None  # set before load_pytorch_module when a PyTorch engine asks for one

    def load_pytorch_module(self):  # -> torch.nn.Module
        raise NotImplementedError(f"{type(self).__name__} must implement load_pytorch_module()")

    def load_example_inputs(self) -> list[np.ndarray]:
        """One array per input in ``self.example_shapes``. Default: seeded random data of the config's dtype."""
        rng = np.random.default_rng(0)
        arrays = []
        for spec, shape in zip(self.config.inputs, self.example_shapes):
            if np.issubdtype(spec.dtype, np.floating):
                arrays.append(rng.random(shape, dtype=np.float32).astype(spec.dtype))
            elif spec.dtype == np.bool_:
                arrays.append(rng.integers(0, 2, shape).astype(np.bool_))
            else:
                arrays.append(rng.integers(0, 100, shape).astype(spec.dtype))
        return arrays

    def load_dataset(self) -> tuple[list[np.ndarray], np.ndarray] | None:
        """Optional labelled data for accuracy: ``(inputs, labels)``, one runtime-ready array per input with the
        samples stacked along the config's batch axis, and integer class labels of shape (N,), or None for
        unlabelled data (agreement with PyTorch over the set, no accuracy). The first output is read as class
        scores. None (the default): no dataset, only agreement on the measured batch."""
        return None

    def load_calibration_data(self) -> list[np.ndarray] | None:
        """Samples for int8 calibration, shaped like ``load_dataset()``'s inputs; keep them apart from the
        accuracy set. None (the default): the dataset's first 64 samples, else the example inputs."""
        return None

    def preprocess(self, example_inputs: list[np.ndarray]) -> list[np.ndarray]:
        """Turn example inputs into runtime tensors (batch of one). Default: see ``default_preprocess``."""
        return [default_preprocess(x, spec) for x, spec in zip(example_inputs, self.config.inputs)]

    def runtime_inputs(self) -> list[np.ndarray]:
        """Example inputs, checked, then preprocessed and checked against the config's runtime shapes."""
        examples = self.load_example_inputs()
        where = f"{type(self).__name__}.load_example_inputs()"
        if not isinstance(examples, (list, tuple)) or len(examples) != len(self.config.inputs):
            count = len(examples) if isinstance(examples, (list, tuple)) else type(examples).__name__
            raise DeployBenchError(f"{where} returned {count} arrays; config has {len(self.config.inputs)} inputs")
        for array, spec, shape in zip(examples, self.config.inputs, self.example_shapes):
            if not isinstance(array, np.ndarray) or tuple(array.shape) != tuple(shape):
                got = tuple(array.shape) if isinstance(array, np.ndarray) else type(array).__name__
                raise DeployBenchError(f"{where}: input {spec.name!r} has shape {got}, expected example shape {tuple(shape)}")
            if array.dtype.kind not in "biuf":
                raise DeployBenchError(f"{where}: input {spec.name!r} has dtype {array.dtype}; expected numbers (the config says {spec.dtype_str})")
        tensors = self.preprocess(list(examples))
        for i, (tensor, spec) in enumerate(zip(tensors, self.config.inputs)):
            problem = spec.accepts(tuple(tensor.shape))
            if problem:
                raise ConfigError(
                    self.config.path,
                    f"inputs[{i}].shapes.example",
                    f"{list(self.example_shapes[i])} becomes {tuple(tensor.shape)} after preprocessing: {problem}",
                )
            if tensor.dtype != spec.dtype:
                raise DeployBenchError(f"{type(self).__name__}.preprocess(): input {spec.name!r} is {tensor.dtype}, config says {spec.dtype_str}")
        return tensors


def default_preprocess(array: np.ndarray, spec: InputSpec) -> np.ndarray:
    """Images: HWC -> CHW when the runtime shape is 4-D NCHW; add the batch dim when it is missing; cast.

    An example shape with the same number of dims as the runtime shape is only cast.
    """
    rank = len(spec.runtime)
    if array.ndim == rank - 1:
        if array.ndim == 3 and array.shape[-1] in (1, 3, 4) and spec.runtime[1] in (array.shape[-1], -1):
            array = np.transpose(array, (2, 0, 1))  # HWC -> CHW
        array = np.expand_dims(array, spec.batch_axis if spec.batch_axis is not None else 0)
    return np.ascontiguousarray(array, dtype=spec.dtype)


def make_batch(tensor: np.ndarray, spec: InputSpec, batch_size: int) -> np.ndarray:
    """Stack a batch-of-one runtime tensor ``batch_size`` times along the config's batch dim."""
    if batch_size == 1:
        return tensor
    axis = spec.batch_axis
    if axis is None:
        raise DeployBenchError(f"input {spec.name!r} has no dim named 'batch_size', so only batch size 1 runs")
    fixed = spec.runtime[axis]
    if fixed not in (-1, batch_size):
        raise DeployBenchError(f"input {spec.name!r}: runtime fixes batch_size to {fixed}; batch size {batch_size} cannot run")
    return np.ascontiguousarray(np.repeat(tensor, batch_size, axis=axis))


def take_samples(array: np.ndarray, spec: InputSpec, start: int, stop: int) -> np.ndarray:
    """Samples ``start:stop`` of a dataset array stacked along the input's batch axis (axis 0 if it has none)."""
    axis = spec.batch_axis if spec.batch_axis is not None else 0
    return np.ascontiguousarray(np.take(array, np.arange(start, stop), axis=axis))
