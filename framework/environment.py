"""What machine and library versions produced a set of results: written next to them as environment.json."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import sys

PACKAGES = ("torch", "torchvision", "onnx", "onnxruntime", "onnxruntime-gpu", "tensorrt", "numpy")


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


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
        "gpus": gpus(),
        "packages": versions,
        "engines": engines(),
    }


def engines() -> dict[str, str | None]:
    """Every engine the framework knows: None where it runs on this machine, else why not (so a report made
    on a laptop says the GPU engines were left out and why, instead of leaving them silently absent)."""
    from framework.engines import ENGINES, engine_availability

    return {name: engine_availability(name) for name in ENGINES}
