"""A background sampler of what an experiment costs besides time: memory, utilisation, clocks.

Every ``interval_s`` (default 20 ms) a daemon thread records, with the time since the timed loop began:
through psutil, this process's resident memory (children included) and CPU use; through NVML (nvidia-ml-py),
the GPU's utilisation, memory used, this process's own device memory, SM clock, temperature, power and
the clock-event (throttle) reasons. The thread sleeps between samples and a CPU sample costs about 10 us
holding the GIL (one pread of /proc/self/statm and one process_time() call; the list of child processes, a /proc
scan of about 1 ms, is refreshed once a second), so the measurement it watches is not disturbed
(``benchmarks/sampler_overhead.py`` prints the difference).

Every 0.5 s at most it also reads the CPU time of every other process (``machine_check.OtherProcessesCPU``: one
read of /proc/<pid>/stat each, about 1 ms for 80 processes; not this process, its children or its ancestors).

Warnings it derives: the GPU throttled (thermal, power, hardware slowdown) or changed its SM clock during
the timed loop; another process held the GPU (named, with its memory); other processes used more than half a
core of CPU time on average (the top three named, with their share). This process's ancestors (the runner,
its fork server, a script calling ``run_model``) wait for the experiment, so a context they hold is not counted.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import threading
import time

from framework.machine_check import OtherProcessesCPU, other_cpu_warning

DEFAULT_INTERVAL_S = 0.02
CHILDREN_REFRESH_S = 1.0
CPU_COLUMNS = ["t_s", "rss_mb", "cpu_pct"]
GPU_COLUMNS = ["gpu_util_pct", "gpu_mem_used_mb", "process_gpu_mem_mb", "sm_clock_mhz", "temperature_c", "power_w", "clock_event_reasons"]
# Clock-event reasons that mean the GPU slowed itself down (idle, sync boost and user clocks do not).
THROTTLE_REASONS = {
    "nvmlClocksEventReasonSwPowerCap": "power cap",
    "nvmlClocksEventReasonHwSlowdown": "hardware slowdown",
    "nvmlClocksEventReasonSwThermalSlowdown": "thermal (software)",
    "nvmlClocksEventReasonHwThermalSlowdown": "thermal (hardware)",
    "nvmlClocksEventReasonHwPowerBrakeSlowdown": "power brake",
}


def visible_gpu_handle(pynvml):
    """NVML's handle of CUDA's device 0: the first of ``CUDA_VISIBLE_DEVICES`` (an index or a UUID; Ray gives
    each task its GPU that way), since NVML numbers every GPU of the machine whatever CUDA sees."""
    first = os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")[0].strip()
    if first.isdigit():
        return pynvml.nvmlDeviceGetHandleByIndex(int(first))
    if first.startswith(("GPU-", "MIG-")):
        return pynvml.nvmlDeviceGetHandleByUUID(first)
    return pynvml.nvmlDeviceGetHandleByIndex(0)


class _Nvml:
    """The NVML calls for one GPU; None where NVML or a GPU is missing."""

    def __init__(self, index: int = 0) -> None:
        import pynvml

        pynvml.nvmlInit()
        self.nvml = pynvml
        self.handle = visible_gpu_handle(pynvml) if index == 0 else pynvml.nvmlDeviceGetHandleByIndex(index)
        self.pid = os.getpid()
        self.waiting = waiting_ancestors()
        self.throttle_bits = {getattr(pynvml, name): text for name, text in THROTTLE_REASONS.items() if hasattr(pynvml, name)}

    @classmethod
    def open(cls, index: int = 0) -> _Nvml | None:
        try:
            return cls(index)
        except Exception:
            return None

    def processes(self) -> list:
        try:
            return list(self.nvml.nvmlDeviceGetComputeRunningProcesses(self.handle))
        except Exception:
            return []

    def sample(self, others: dict[int, float]) -> list:
        """One timeline row; adds the processes outside this run that hold the GPU to ``others`` (PID: peak MB)."""
        n, h = self.nvml, self.handle
        util = n.nvmlDeviceGetUtilizationRates(h).gpu
        used = n.nvmlDeviceGetMemoryInfo(h).used / 2**20
        own = 0.0
        for process in self.processes():
            megabytes = (process.usedGpuMemory or 0) / 2**20
            if process.pid == self.pid:
                own += megabytes
            elif process.pid not in self.waiting:
                others[process.pid] = max(others.get(process.pid, 0.0), megabytes)
        clock = n.nvmlDeviceGetClockInfo(h, n.NVML_CLOCK_SM)
        temperature = n.nvmlDeviceGetTemperature(h, n.NVML_TEMPERATURE_GPU)
        power = n.nvmlDeviceGetPowerUsage(h) / 1000
        reasons = n.nvmlDeviceGetCurrentClocksEventReasons(h) if hasattr(n, "nvmlDeviceGetCurrentClocksEventReasons") else 0
        return [util, used, own, clock, temperature, power, reasons]


def waiting_ancestors() -> set[int]:
    """This process and its ancestors: they wait for the experiment, so their GPU contexts cost memory, not time."""
    import psutil

    try:
        return {os.getpid(), *(parent.pid for parent in psutil.Process().parents())}
    except Exception:
        return {os.getpid()}


def other_processes_warning(others: dict[int, float]) -> str | None:
    """'other processes held the GPU ...: PID 1112 (python3 train.py, 2,048 MB)'; None when there were none."""
    import psutil

    if not others:
        return None
    described = []
    for pid, megabytes in sorted(others.items()):
        try:
            command = " ".join(psutil.Process(pid).cmdline()[:3]) or psutil.Process(pid).name()
        except Exception:  # gone, or in another PID namespace (another container)
            command = "not visible from here"
        described.append(f"PID {pid} ({command}, {megabytes:,.0f} MB)")
    return f"other processes held the GPU during the timed loop and may have used it: {'; '.join(described)}"


class ResourceSampler:
    """``with ResourceSampler(gpu=True) as sampler: <timed loop>``; then ``sampler.rows``, ``peaks()``."""

    def __init__(self, interval_s: float = DEFAULT_INTERVAL_S, gpu: bool = False) -> None:
        import psutil

        self.interval_s = interval_s
        self.process = psutil.Process()
        self.nvml = _Nvml.open() if gpu else None
        self.rows: list[list] = []
        self.other_gpu_processes: dict[int, float] = {}  # PID: peak device memory (MB)
        self.other_cpu = OtherProcessesCPU()
        self._statm = os.open("/proc/self/statm", os.O_RDONLY) if os.path.exists("/proc/self/statm") else None
        self._page = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
        self._cpu_last: tuple[float, float | None] = (0.0, None)
        self._children: list = []
        self._children_checked = -float("inf")
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def columns(self) -> list[str]:
        return CPU_COLUMNS + (GPU_COLUMNS if self.nvml else [])

    def _own_rss(self) -> int:
        if self._statm is not None:  # Linux: one pread, a few microseconds
            return int(os.pread(self._statm, 64, 0).split()[1]) * self._page
        return self.process.memory_info().rss

    def _cpu_pct(self) -> float | None:
        """CPU time of all this process's threads since the previous sample over the wall time between them
        (100 = one core); None for the first sample, which has no interval behind it. process_time() is
        nanosecond-grained: os.times() counts 10 ms ticks, too coarse for a 20 ms period."""
        used, now = time.process_time(), time.perf_counter()
        last_used, last_now = self._cpu_last
        self._cpu_last = (used, now)
        return None if last_now is None else 100 * (used - last_used) / max(now - last_now, 1e-9)

    def _rss_mb(self) -> float:
        rss = self._own_rss()
        now = time.monotonic()
        if now - self._children_checked > CHILDREN_REFRESH_S:  # listing children scans /proc: ~1 ms, so rarely
            self._children = self.process.children(recursive=True)
            self._children_checked = now
        for child in self._children:
            with contextlib.suppress(Exception):  # a child that just exited
                rss += child.memory_info().rss
        return rss / 2**20

    def _sample(self) -> None:
        row = [time.perf_counter_ns(), self._rss_mb(), self._cpu_pct()]
        if self.nvml:
            try:
                row += self.nvml.sample(self.other_gpu_processes)
            except Exception:
                row += [None] * len(GPU_COLUMNS)
        self.rows.append(row)
        self.other_cpu.scan(force=False)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sample()

    def __enter__(self) -> ResourceSampler:
        self._sample()
        self._thread = threading.Thread(target=self._run, name="deploybench-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()
        self.other_cpu.scan()
        if self._statm is not None:
            os.close(self._statm)
            self._statm = None

    def to_csv(self, origin_ns: int) -> str:
        """The timeline; ``t_s`` counts from ``origin_ns`` (the timed loop's start: warm-up is negative)."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(self.columns)
        for row in self.rows:
            values = [(row[0] - origin_ns) / 1e9, *row[1:]]
            writer.writerow(["" if v is None else (f"{v:.4f}" if isinstance(v, float) else v) for v in values])
        return buffer.getvalue()

    def summary(self) -> dict:
        """Peaks and means over the samples, and the warnings they justify."""
        columns = {name: [row[i] for row in self.rows if row[i] is not None] for i, name in enumerate(self.columns)}
        cpu = columns["cpu_pct"] or [0.0]
        result = {
            "samples": len(self.rows),
            "interval_s": self.interval_s,
            "peak_rss_mb": max(columns["rss_mb"]),
            "mean_cpu_pct": sum(cpu) / len(cpu),
            "peak_cpu_pct": max(cpu),
        }
        cores, used = self.other_cpu.usage()
        result["other_cpu_pct"] = 100 * cores
        warnings = [w] if (w := other_cpu_warning(cores, used)) else []
        if self.nvml and columns["gpu_util_pct"]:
            clocks = columns["sm_clock_mhz"]
            result.update(
                peak_gpu_mem_used_mb=max(columns["gpu_mem_used_mb"]),
                peak_process_gpu_mem_mb=max(columns["process_gpu_mem_mb"]),
                mean_gpu_util_pct=sum(columns["gpu_util_pct"]) / len(columns["gpu_util_pct"]),
                sm_clock_min_mhz=min(clocks),
                sm_clock_max_mhz=max(clocks),
                peak_temperature_c=max(columns["temperature_c"]),
                peak_power_w=max(columns["power_w"]),
            )
            seen = 0
            for bits in columns["clock_event_reasons"]:
                seen |= int(bits)
            throttles = sorted(text for bit, text in self.nvml.throttle_bits.items() if seen & bit)
            result["throttle_reasons"] = throttles
            if throttles:
                warnings.append(f"the GPU throttled during the timed loop ({', '.join(throttles)})")
            if max(clocks) - min(clocks) > 0.05 * max(clocks):
                warnings.append(f"the GPU's SM clock changed during the timed loop ({min(clocks)}-{max(clocks)} MHz)")
            result["other_gpu_processes"] = {str(pid): mb for pid, mb in sorted(self.other_gpu_processes.items())}
            if (warning := other_processes_warning(self.other_gpu_processes)) is not None:
                warnings.append(warning)
        result["warnings"] = warnings
        return result


def process_rss_mb() -> float:
    """This process's resident memory now (children not included)."""
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def process_gpu_memory_mb(index: int = 0) -> float | None:
    """This process's device memory as NVML sees it (what the user pays), or None without NVML."""
    nvml = _Nvml.open(index)
    if nvml is None:
        return None
    return sum((p.usedGpuMemory or 0) for p in nvml.processes() if p.pid == nvml.pid) / 2**20


def cuda_context_mb() -> float | None:
    """Device memory of this process right after CUDA starts, before the engine loads: the context's own
    cost, reported apart so engines compare on what they add."""
    import torch

    torch.zeros(1, device="cuda")
    torch.cuda.synchronize()
    return process_gpu_memory_mb(torch.cuda.current_device())


def torch_max_allocated_mb() -> float:
    import torch

    return torch.cuda.max_memory_allocated() / 2**20
