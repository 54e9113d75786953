"""Turn whatever a PyTorch module returns into ``{output name: numpy array}`` in the config's order, and map
dtypes between numpy and torch (the GPU engines keep their buffers as torch tensors)."""

from __future__ import annotations

import numpy as np


def output_tensors(result, output_names: list[str]) -> list:
    """The tensors a module returned, in the config's output order: a tensor, a (nested) tuple/list of
    tensors, or a dict keyed by output name."""
    import torch

    if isinstance(result, dict):
        missing = [n for n in output_names if n not in result]
        if missing:
            raise ValueError(f"model returned keys {sorted(result)}, config outputs {missing} are missing")
        tensors = [result[n] for n in output_names]
    else:
        tensors = []
        stack = [result]
        while stack:
            item = stack.pop(0)
            if isinstance(item, (tuple, list)):
                stack[:0] = list(item)
            else:
                tensors.append(item)
        if len(tensors) != len(output_names):
            raise ValueError(f"model returned {len(tensors)} outputs, config names {len(output_names)}: {output_names}")
    for name, t in zip(output_names, tensors):
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"output {name!r} is {type(t).__name__}, expected a tensor")
    return tensors


def named_outputs(result, output_names: list[str]) -> dict[str, np.ndarray]:
    """``output_tensors`` copied to the host as numpy arrays, keyed by output name (bfloat16 becomes float32)."""
    import torch

    return {
        name: (t.detach().to("cpu").float() if t.dtype == torch.bfloat16 else t.detach().to("cpu")).numpy()
        for name, t in zip(output_names, output_tensors(result, output_names))
    }


def torch_dtype(dtype):
    """The torch dtype of a numpy dtype (``np.float16`` -> ``torch.float16``)."""
    import torch

    return torch.from_numpy(np.zeros((), dtype=dtype)).dtype


def numpy_dtype(dtype) -> np.dtype:
    """The numpy dtype of a torch dtype (``torch.float16`` -> ``float16``)."""
    import torch

    return torch.empty((), dtype=dtype).numpy().dtype


def reference_outputs(module, config, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The module's outputs on named numpy inputs, on the CPU without autograd: the fp32 yardstick."""
    import torch

    with torch.inference_mode():
        result = module(*(torch.from_numpy(feed[n]) for n in config.input_names))
    return named_outputs(result, config.output_names)
