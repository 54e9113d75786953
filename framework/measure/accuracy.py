"""Accuracy on a model's labelled dataset, per engine and precision: what fp16 or int8 cost in top-1/top-5.

Run after the timed loop, outside it, in batches of the experiment's batch size; a last short batch is
padded with its own last sample and the padding's outputs ignored, so engines built for a fixed batch
run it too. The first output is read as class scores, one row per sample.
"""

from __future__ import annotations

import numpy as np

from framework.config import ModelConfig
from framework.loader import take_samples


def evaluate(
    infer, config: ModelConfig, dataset: tuple[list[np.ndarray], np.ndarray], batch_size: int, limit: int | None = None
) -> tuple[dict, dict[str, np.ndarray]]:
    """Top-1 and top-5 accuracy of ``infer`` (named inputs -> named outputs) over the dataset (None for an
    unlabelled one), and every output over it (samples along axis 0), for the agreement with PyTorch."""
    inputs, labels = dataset
    spec = config.inputs[0]
    total = inputs[0].shape[spec.batch_axis if spec.batch_axis is not None else 0]
    labels = np.asarray(labels).reshape(-1) if labels is not None else None
    count = total if limit is None else min(limit, total)
    if count == 0:
        raise ValueError("the dataset is empty")
    top1 = top5 = 0
    collected: dict[str, list[np.ndarray]] = {name: [] for name in config.output_names}
    for start in range(0, count, batch_size):
        stop = min(start + batch_size, count)
        feed = {}
        for spec, array in zip(config.inputs, inputs):
            batch = take_samples(array, spec, start, stop)
            if stop - start < batch_size:  # pad: repeat the last sample along the batch axis
                axis = spec.batch_axis if spec.batch_axis is not None else 0
                pad = np.repeat(np.take(batch, [-1], axis=axis), batch_size - (stop - start), axis=axis)
                batch = np.ascontiguousarray(np.concatenate([batch, pad], axis=axis))
            feed[spec.name] = batch
        outputs = infer(feed)
        for name in config.output_names:
            collected[name].append(np.asarray(outputs[name])[: stop - start])
        if labels is None:
            continue
        scores = np.asarray(outputs[config.output_names[0]])[: stop - start]
        scores = scores.reshape(stop - start, -1).astype(np.float64)
        ranked = np.argsort(-scores, axis=1, kind="stable")[:, :5]
        truth = labels[start:stop]
        top1 += int((ranked[:, 0] == truth).sum())
        top5 += int((ranked == truth[:, None]).any(axis=1).sum())
    merged = {name: np.concatenate(parts, axis=0) for name, parts in collected.items()}
    if labels is None:
        return None, merged
    return {"samples": count, "top1": top1 / count, "top5": top5 / count}, merged
