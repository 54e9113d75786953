"""What machine and library versions produced a set of results: written next to them as environment.json."""

from __future__ import annotations

import functools
import importlib.metadata
import os
import platform
import sys
import time
from pathlib import Path

PACKAGES = ("torch", "torchvision", "onnx", "onnxruntime", "onnxruntime-gpu", "tensorrt", "numpy")
HISTORY = 50  # earlier runs kept in environment.json


@functools.cache
def _cpuinfo_field(key: str) -> str | None:
    """The first ``key : value`` line of /proc/cpuinfo (Linux); None elsewhere. Cached: the CPU does not change,
    and ``cpu_int8_saturates`` is asked for every experiment's fingerprint."""
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith(key):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def cpu_model() -> str:
    return _cpuinfo_field("model name") or platform.processor() or platform.machine()


def cpu_flags() -> set[str]:
    return set((_cpuinfo_field("flags") or "").split())


def cpu_int8_saturates(flags: set[str] | None = None) -> bool:
    """True on x86 CPUs with AVX2/AVX-512 but no VNNI: there ONNX Runtime's u8s8 int8 kernels multiply with
    VPMADDUBSW, whose 16-bit intermediate sums can saturate (VNNI's VPDPBUSD accumulates in 32 bits)."""
    flags = cpu_flags() if flags is None else flags
    return bool(flags & {"avx2", "avx512bw"}) and not flags & {"avx512_vnni", "avx_vnni", "amx_int8"}


def gpus() -> list[dict]:
    """Name, memory and driver of each NVIDIA GPU through NVML; empty where there is none."""
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception:
        return []
    try:
        driver = pynvml.nvmlSystemGetDriverVersion()
        found = []
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            found.append(
                {
                    "index": index,
                    "name": pynvml.nvmlDeviceGetName(handle),
                    "memory_mb": pynvml.nvmlDeviceGetMemoryInfo(handle).total / 2**20,
                    "compute_capability": ".".join(map(str, pynvml.nvmlDeviceGetCudaComputeCapability(handle))),
                    "driver": driver,
                }
            )
        return found
    finally:
        pynvml.nvmlShutdown()


def collect() -> dict:
    import psutil

    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu_model": cpu_model(),
        "cpu_cores_physical": psutil.cpu_count(logical=False),
        "cpu_cores_logical": psutil.cpu_count(logical=True),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "memory_gb": psutil.virtual_memory().total / 1e9,
        "cpu_int8_saturates": cpu_int8_saturates(),
        "gpus": gpus(),
        "packages": versions,
        "engines": engines(),
    }


def engines() -> dict[str, str | None]:
    """Every engine the framework knows: None where it runs on this machine, else why not (so a report made
    on a laptop says the GPU engines were left out and why, instead of leaving them silently absent)."""
    from framework.engines import ENGINES, engine_availability

    return {name: engine_availability(name) for name in ENGINES}


@functools.cache
def _fingerprint_fields() -> str:
    import json

    versions = {}
    for name in (*PACKAGES, "tensorrt-rtx-cu13-bindings", "onnxconverter-common"):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return json.dumps({"cpu_model": cpu_model(), "gpus": [[g["name"], g["driver"]] for g in gpus()], "packages": versions}, sort_keys=True)


def fingerprint_fields() -> dict:
    """What a figure depends on besides the model and the settings: the CPU, the GPUs and their driver, and the
    versions of the libraries that run it. Part of every result's fingerprint, so an upgrade or another
    machine measures again instead of resuming figures of another environment. Read once per process."""
    import json

    return json.loads(_fingerprint_fields())


def record(path: Path) -> dict:
    """Write this run's environment to ``path`` (environment.json), keeping earlier runs' under ``history``
    (newest last, at most ``HISTORY``), so results resumed from an earlier run keep the record of theirs."""
    import json

    current = {**collect(), "recorded": time.strftime("%Y-%m-%d %H:%M:%S")}
    history = []
    try:
        earlier = json.loads(Path(path).read_text())
        if isinstance(earlier, dict):
            history = [*earlier.pop("history", []), earlier][-HISTORY:]
    except (OSError, ValueError):
        pass
    from framework.files import write_json

    write_json(path, {**current, "history": history})
    return current
