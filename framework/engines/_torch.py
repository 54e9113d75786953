"""What both PyTorch engines share: ``torch.compile`` with its cache in the model's cache folder, timed apart.

Inductor keeps compiled kernels in ``TORCHINDUCTOR_CACHE_DIR`` (read when it compiles): pointing it at the
model's cache folder makes a configuration ``--tune`` tried compile from cache when it is measured fully,
and keeps the artifacts with the results they belong to.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
# ``compile_shapes``: torch.compile's ``dynamic``: "" None (its default: specialise, then generalise a dim
# that changed), "static" False (one graph per shape, recompiled at each new one), "dynamic" True.
COMPILE_SHAPES = {"": None, "static": False, "dynamic": True}


def compile_module(module, mode: str, cache_dir: Path | None, shapes: str = ""):
    """``torch.compile(module, mode=mode, dynamic=COMPILE_SHAPES[shapes])``, or ``module`` itself when ``mode`` is empty."""
    if not mode:
        return module
    import torch

    if mode not in COMPILE_MODES:
        from framework.errors import DeployBenchError

        raise DeployBenchError(f"--option compile={mode!r}: torch.compile modes are {', '.join(COMPILE_MODES)} (or empty: eager)")
    if cache_dir is not None:
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(Path(cache_dir) / "inductor")
    if shapes not in COMPILE_SHAPES:
        from framework.errors import DeployBenchError

        raise DeployBenchError(f"--option compile_shapes={shapes!r}: one of {', '.join(repr(k) for k in COMPILE_SHAPES)}")
    return torch.compile(module, mode=mode, dynamic=COMPILE_SHAPES[shapes])


def timed_first_call(call) -> float:
    """Seconds one call took: a compiled module's first call is where it compiles."""
    start = time.perf_counter()
    call()
    return time.perf_counter() - start
