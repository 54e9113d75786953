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


def compile_module(module, mode: str, cache_dir: Path | None):
    """``torch.compile(module, mode=mode)``, or ``module`` itself when ``mode`` is empty."""
    if not mode:
        return module
    import torch

    if mode not in COMPILE_MODES:
        from framework.errors import DeployBenchError

        raise DeployBenchError(f"--option compile={mode!r}: torch.compile modes are {', '.join(COMPILE_MODES)} (or empty: eager)")
    if cache_dir is not None:
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(Path(cache_dir) / "inductor")
    return torch.compile(module, mode=mode)


def timed_first_call(call) -> float:
    """Seconds one call took: a compiled module's first call is where it compiles."""
    start = time.perf_counter()
    call()
    return time.perf_counter() - start
