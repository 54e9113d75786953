"""The PyTorch fp32 reference outputs every experiment of a batch size compares against, one file per batch size.

A sweep's batch is its example input repeated (``loader.make_batch``), so a model that treats the samples of
a batch apart gives every sample the batch of one's outputs. Where a batch of two shows that (each sample's
outputs within float noise of the batch of one's), larger batches take the batch of one's outputs repeated
instead of a forward pass of their own: a ResNet-50 at batch 256 otherwise costs tens of seconds of CPU
before anything is measured. A model that mixes samples (or has an output without a batch dim) gets the
full forward pass at every batch size. The dataset's outputs do not depend on the batch size: computed
once. Each file is cached (``artifacts.cache``) under the weights, data, inputs and library versions.
``--full-references`` (``full``) turns the shortcut off: a model that changes only above a batch of two
(a batch-size threshold in ``forward``) would otherwise be judged against the wrong outputs.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from framework.artifacts.cache import cached_build
from framework.artifacts.graphs import calibration_digest
from framework.config import BATCH_DIM_NAME, ModelConfig
from framework.measure.accuracy import evaluate
from framework.sweep.job import write_shape_data
from framework.sweep.prepare import PreparedShape, batch_inputs, check_outputs, varied_inputs

SAME_RTOL, SAME_ATOL = 1e-5, 1e-6  # batch of two against batch of one: float noise, far inside fp32 engines' tolerance
DATASET_BATCH = 64


class References:
    """One shape's references, each batch size's file written (or reused) by ``write``."""

    def __init__(self, prepared: PreparedShape, accuracy_limit: int | None, report: Callable[[str], None], full: bool = False) -> None:
        self.prepared, self.accuracy_limit, self.report, self.full = prepared, accuracy_limit, report, full
        self._said = False  # the run was told that references are repeated
        self._single: tuple[dict, dict] | None = None  # the batch of one's (timed, varied) outputs
        self._independent: bool | None = None
        self._dataset: dict | None = None
        self._inputs_digest = calibration_digest([{str(i): x for i, x in enumerate(prepared.inputs)}])  # a cache key of every batch size

    def write(self, batch_size: int) -> Path:
        """The batch's inputs and references file; raises when the model cannot take the batch."""
        import torch

        prepared = self.prepared
        batch_inputs(prepared.config, prepared.inputs, batch_size)  # a batch size the model cannot take fails here
        settings = {"artifact": "references", "model_digest": prepared.model_digest, "data_digest": prepared.data_digest,
                    "inputs": self._inputs_digest, "batch_size": batch_size, "accuracy_limit": self.accuracy_limit,
                    "torch": torch.__version__, **({"full": True} if self.full else {})}  # fmt: skip
        path = prepared.cache_dir / f"inputs_references_bs{batch_size}.npz"
        cached_build(path, settings, lambda target: self._build(target, batch_size))
        return path

    def _build(self, target: Path, batch_size: int) -> dict:
        config, inputs = self.prepared.config, self.prepared.inputs
        if batch_size == 1:
            timed, varied = self.single()
            check_outputs(config, timed, 1)
            how = "forward pass"
        elif not self.full and self.independent():
            timed, varied = (repeated(config, outputs, batch_size) for outputs in self.single())
            how = "batch of one repeated"
            if not self._said:
                self._said = True
                self.report(f"{config.name} {self.prepared.tag}: PyTorch references above batch 1 are the batch of one's outputs repeated "
                            f"(a batch of two gives each sample the batch of one's); a model that changes with the batch size above 2 "
                            f"needs --full-references")  # fmt: skip
        else:
            batch = batch_inputs(config, inputs, batch_size)
            timed, varied = self.forward(batch), self.forward(varied_inputs(batch))
            check_outputs(config, timed, batch_size)
            how = "forward pass"
        write_shape_data(target, list(inputs), timed, varied, self.dataset())
        return {"computed": how}

    def forward(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from framework.torch_outputs import reference_outputs

        return reference_outputs(self.prepared.module, self.prepared.config, feed)

    def single(self) -> tuple[dict, dict]:
        if self._single is None:
            batch = batch_inputs(self.prepared.config, self.prepared.inputs, 1)
            self._single = self.forward(batch), self.forward(varied_inputs(batch))
        return self._single

    def independent(self) -> bool:
        """Whether each sample of a batch of two gets the batch of one's outputs (every output has a batch dim)."""
        if self._independent is None:
            config = self.prepared.config
            why = self._mixing_reason()
            self._independent = why is None
            if why:
                self.report(f"{config.name} {self.prepared.tag}: PyTorch references by a forward pass at every batch size ({why})")
        return self._independent

    def _mixing_reason(self) -> str | None:
        """Why larger batches cannot take the batch of one's outputs repeated; None when they can."""
        config = self.prepared.config
        without = [spec.name for spec in config.outputs if BATCH_DIM_NAME not in spec.dims_names]
        if without:
            return f"output {without[0]!r} has no {BATCH_DIM_NAME} dim"
        try:
            pair = self.forward(batch_inputs(config, self.prepared.inputs, 2))
            check_outputs(config, pair, 2)
        except Exception:  # the batch sizes' own forward passes say what fails
            return "the model does not run a batch of two"
        expected = repeated(config, self.single()[0], 2)
        differ = [name for name in config.output_names if not _same(pair[name], expected[name])]
        return f"at batch 2, {differ[0]!r} differs from the batch of one's" if differ else None

    def dataset(self) -> dict[str, np.ndarray]:
        if self._dataset is None:
            self._dataset = {}
            if self.prepared.dataset is not None:
                prepared = self.prepared
                self._dataset = evaluate(self.forward, prepared.config, prepared.dataset, DATASET_BATCH, self.accuracy_limit)[1]
        return self._dataset


def repeated(config: ModelConfig, outputs: dict[str, np.ndarray], batch_size: int) -> dict[str, np.ndarray]:
    """Batch-of-one outputs repeated ``batch_size`` times along each output's batch dim."""
    return {spec.name: np.ascontiguousarray(np.repeat(outputs[spec.name], batch_size, axis=spec.dims_names.index(BATCH_DIM_NAME)))
            for spec in config.outputs}  # fmt: skip


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if not np.issubdtype(a.dtype, np.floating):
        return bool(np.array_equal(a, b))
    scale = float(np.max(np.abs(b))) if b.size and np.isfinite(b).all() else 1.0
    return bool(np.allclose(a, b, rtol=SAME_RTOL, atol=SAME_ATOL * max(1.0, scale), equal_nan=True))
