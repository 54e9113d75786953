"""What every GPU engine shares, kept out of the engine modules so none imports another: whether CUDA is
usable here, and the latency-all step (pinned host input -> device -> run -> pinned host output)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def cuda_unavailable_reason() -> str | None:
    """None when torch sees a CUDA GPU, else why not (every GPU engine keeps its buffers as torch tensors)."""
    try:
        import torch
    except ImportError:
        return "torch is not installed (pip install torch with CUDA, then deploybench[gpu])"
    if not torch.cuda.is_available():
        return f"no CUDA GPU visible to torch {torch.__version__} (torch.cuda.is_available() is False)"
    return None


def pinned_round_trip(
    stream, host_inputs: list[np.ndarray], device_inputs: list, run: Callable[[], object], device_outputs: Callable[[], list]
) -> Callable[[], None]:
    """A step that copies ``host_inputs`` (pinned once, here) into ``device_inputs``, calls ``run``, copies
    ``device_outputs()`` into pinned host buffers and synchronises ``stream``. Copies cast to the device
    buffer's dtype and layout (fp16, channels_last) on the device."""
    import torch

    pinned_in = [torch.from_numpy(a).pin_memory() for a in host_inputs]
    with torch.cuda.stream(stream):
        run()
    stream.synchronize()
    pinned_out = [torch.empty(t.shape, dtype=t.dtype, pin_memory=True) for t in device_outputs()]

    def step() -> None:
        with torch.cuda.stream(stream):
            for dst, src in zip(device_inputs, pinned_in):
                dst.copy_(src, non_blocking=True)
            run()
            for dst, src in zip(pinned_out, device_outputs()):
                dst.copy_(src, non_blocking=True)
        stream.synchronize()

    return step
