"""The machine as a benchmark sees it: the CPUs this process may use and their physical cores (the threads an
engine takes by default, the CPUs ``--pin`` pins to), and whether other processes compete for them: once
before a sweep (``machine_state``, ``--require-quiet``) and during every timed loop (``OtherProcessesCPU``,
which the resource sampler runs).

Busy, for ``--require-quiet``: the 1-minute load average above half the CPUs this process may use, or another
process above 50% of a core over the 0.5 s sample. Processes are read from /proc directly: psutil's
``process_iter`` took 6.5 ms for 81 processes on the 2-core VM, reading ``/proc/<pid>/stat`` 0.75 ms.
Only processes of this PID namespace are visible (a container sees its own).
"""

from __future__ import annotations

import functools
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from framework.errors import DeployBenchError

SYS_CPU = Path("/sys/devices/system/cpu")
SAMPLE_S = 0.5  # the pre-sweep look at other processes, and the sampler's refresh period for them
LISTED_PCT = 5.0  # other processes above this share of a core are named in the pre-sweep line
BUSY_PROCESS_PCT = 50.0  # --require-quiet: another process above this share of a core is busy
WARN_CORES = 0.5  # a result warns when other processes used more than this many cores during its timed loop
TOP = 3


def usable_cpus() -> list[int]:
    """The logical CPUs this process may run on (its affinity mask)."""
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return list(range(os.cpu_count() or 1))


@functools.cache
def _core_of(cpu: int) -> tuple[int, int] | None:
    """(package, core) of a logical CPU from sysfs; None where the topology is not readable."""
    try:
        topology = SYS_CPU / f"cpu{cpu}" / "topology"
        return int((topology / "physical_package_id").read_text()), int((topology / "core_id").read_text())
    except (OSError, ValueError):
        return None


def physical_cores(cpus: list[int] | None = None) -> list[list[int]]:
    """The physical cores among ``cpus`` (default: ``usable_cpus()``), each as its logical CPUs, in CPU order.
    A CPU whose topology is not readable counts as a core of its own."""
    cores: dict[tuple, list[int]] = {}
    for cpu in usable_cpus() if cpus is None else sorted(cpus):
        cores.setdefault(_core_of(cpu) or ("cpu", cpu), []).append(cpu)
    return list(cores.values())


def cpu_quota() -> float | None:
    """The cgroup's CPU limit in cores (a container started with --cpus), or None when there is none."""
    for path, period_path in ((Path("/sys/fs/cgroup/cpu.max"), None),
                              (Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us"), Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us"))):  # fmt: skip
        try:
            fields = path.read_text().split()
            quota, period = fields[0], (fields[1] if period_path is None else period_path.read_text().strip())
            if quota not in ("max", "-1"):
                return int(quota) / int(period)
        except (OSError, ValueError, IndexError):
            continue
    return None


def default_threads() -> int:
    """The physical cores this process may use (its affinity mask's; no more than its cgroup quota allows, nor
    than psutil counts physical cores): what engines take by default, never more."""
    count = len(physical_cores())
    quota = cpu_quota()
    if quota:
        count = min(count, math.ceil(quota))
    try:
        import psutil

        count = min(count, psutil.cpu_count(logical=False) or count)
    except ImportError:
        pass
    return max(1, count)


def pin_set(threads: int) -> list[int]:
    """``--pin``: one logical CPU of each of the first ``threads`` physical cores this process may use, so no
    two threads share a core (nor its SMT sibling)."""
    return [core[0] for core in physical_cores()[:threads]]


def governor() -> str | None:
    try:
        return (SYS_CPU / "cpu0" / "cpufreq" / "scaling_governor").read_text().strip()
    except OSError:
        return None


def scan_processes() -> dict[tuple[int, float], tuple[int, float, str]]:
    """``(pid, start time) -> (parent pid, CPU seconds used, name)`` of every process visible here. The start
    time keeps a reused PID apart. Linux: /proc read directly; elsewhere psutil."""
    if not os.path.isdir("/proc/self"):
        return _scan_with_psutil()
    tick = os.sysconf("SC_CLK_TCK")
    table = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as handle:
                data = handle.read()
        except OSError:  # exited since the listing
            continue
        close = data.rfind(b")")
        fields = data[close + 2 :].split()
        comm = data[data.find(b"(") + 1 : close].decode(errors="replace")
        table[int(name), float(fields[19])] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / tick, comm)
    return table


def _scan_with_psutil() -> dict:
    import psutil

    table = {}
    for process in psutil.process_iter(["ppid", "cpu_times", "name", "create_time"]):
        info = process.info
        if info["cpu_times"] is not None:
            table[process.pid, info["create_time"]] = (info["ppid"], info["cpu_times"].user + info["cpu_times"].system, info["name"])
    return table


def command_of(pid: int, name: str) -> str:
    """A process's command line, shortened; its name when that is not readable (exited, another user's)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        words = [a.decode(errors="replace") for a in argv if a]
        command = " ".join([os.path.basename(words[0]), *words[1:]]) if words else ""
    except OSError:
        command = ""
    command = " ".join(command.split()) or name  # one line: no newlines of a `python -c` script
    return command if len(command) <= 60 else command[:57] + "..."


class OtherProcessesCPU:
    """The CPU time other processes use between the first and the last ``scan``: every visible process but
    this one, its descendants (its own work) and, with ``ancestors``, its ancestors (they wait for it: the
    sweep, its fork server). ``scan(force=False)`` rescans at most every ``refresh_s``, to stay cheap."""

    def __init__(self, refresh_s: float = SAMPLE_S, ancestors: bool = True) -> None:
        self.refresh_s, self.ancestors, self.pid = refresh_s, ancestors, os.getpid()
        self.first: dict[tuple, float] = {}
        self.last: dict[tuple, float] = {}
        self.names: dict[tuple, str] = {}
        self.ours: set[tuple] = set()  # excluded once, excluded for good (a child orphaned by its parent is still ours)
        self.started: float | None = None
        self.scanned: float | None = None

    def scan(self, force: bool = True) -> None:
        now = time.monotonic()
        if not force and self.scanned is not None and now - self.scanned < self.refresh_s:
            return
        table = scan_processes()
        mine = self._excluded({key[0]: ppid for key, (ppid, _, _) in table.items()})
        self.ours.update(key for key in table if key[0] in mine)
        for key, (_, used, name) in table.items():
            if key in self.ours:
                continue
            # a process first seen after the first scan started since: all of its CPU time lies inside
            self.first.setdefault(key, used if self.started is None else 0.0)
            self.last[key], self.names[key] = used, name
        self.started = now if self.started is None else self.started
        self.scanned = now

    def _excluded(self, parents: dict[int, int]) -> set[int]:
        excluded, pid = {self.pid}, self.pid
        while self.ancestors and parents.get(pid, 0) > 0 and parents[pid] not in excluded:
            pid = parents[pid]
            excluded.add(pid)
        children: dict[int, list[int]] = {}
        for child, parent in parents.items():
            children.setdefault(parent, []).append(child)
        stack = [self.pid]
        while stack:
            for child in children.get(stack.pop(), ()):
                if child not in excluded:
                    excluded.add(child)
                    stack.append(child)
        return excluded

    def usage(self) -> tuple[float, list[tuple[float, int, str]]]:
        """Cores the others used on average over the span, and ``(cores, pid, name)`` of each that used any, most first."""
        span = (self.scanned or 0.0) - (self.started or 0.0)
        if span <= 0:
            return 0.0, []
        used = sorted((((self.last[k] - self.first[k]) / span, k[0], self.names[k]) for k in self.last if self.last[k] > self.first[k]), reverse=True)
        return sum(u for u, _, _ in used), used


def describe_processes(used: list[tuple[float, int, str]], top: int = TOP) -> str:
    """'python3 busy.py (PID 812, 97%); ...' for the ``top`` first of ``OtherProcessesCPU.usage()``."""
    return "; ".join(f"{command_of(pid, name)} (PID {pid}, {100 * cores:.0f}%)" for cores, pid, name in used[:top])


def other_cpu_warning(cores: float, used: list[tuple[float, int, str]]) -> str | None:
    """The result's warning when other processes used more than half a core during its timed loop; else None."""
    if cores <= WARN_CORES:
        return None
    named = describe_processes([u for u in used if u[0] >= 0.01]) or "exited before they could be named"  # 1% of a core and up
    return f"other processes used {100 * cores:.0f}% of a core during the timed loop: {named}"


@dataclass(frozen=True)
class MachineState:
    load_average: float | None  # 1 minute
    cpus: int  # logical CPUs this process may use (affinity mask, cgroup quota)
    physical_cores: int
    threads: int  # engines' default
    governor: str | None
    others: tuple[tuple[float, int, str], ...]  # (cores, pid, name) above 5% of a core, most first

    @property
    def hogs(self) -> list[tuple[float, int, str]]:
        return [o for o in self.others if 100 * o[0] > BUSY_PROCESS_PCT]

    def busy_rules(self) -> list[str]:
        """Which rules of "busy" the machine breaks; empty when it is quiet."""
        rules = []
        if self.load_average is not None and self.load_average > self.cpus / 2:
            rules.append(f"load average {self.load_average:.2f} above {self.cpus / 2:g} (half the {self.cpus} usable CPUs)")
        if self.hogs:
            rules.append(f"{len(self.hogs)} other process{'es' if len(self.hogs) > 1 else ''} above {BUSY_PROCESS_PCT:.0f}% of a core")
        return rules

    def busy_reasons(self) -> list[str]:
        """``busy_rules`` and the processes that make the machine busy (the busiest, when the load alone does)."""
        rules = self.busy_rules()
        if rules and self.others:
            hogs = self.hogs
            rules.append(f"busy: {describe_processes(hogs, len(hogs))}" if hogs else f"busiest: {describe_processes(list(self.others))}")
        return rules

    def line(self) -> str:
        load = "n/a" if self.load_average is None else f"{self.load_average:.2f}"
        rules = self.busy_rules()
        verdict = f"BUSY ({'; '.join(rules)}): figures may be slower and noisier" if rules else "quiet"
        return (f"machine: load average {load} on {self.cpus} usable CPUs ({self.physical_cores} physical cores, "
                f"{self.threads} threads per engine by default), CPU governor {self.governor or 'not readable'}; "
                f"other processes above {LISTED_PCT:.0f}% of a core: {describe_processes(list(self.others)) or 'none'}; "
                f"{verdict}")  # fmt: skip


def machine_state(sample_s: float = SAMPLE_S) -> MachineState:
    """The machine now: load, CPUs, governor, and the other processes above 5% of a core over ``sample_s``
    (this process and its children excluded)."""
    others = OtherProcessesCPU(ancestors=False)
    others.scan()
    time.sleep(sample_s)
    others.scan()
    _, used = others.usage()
    cpus = len(usable_cpus())
    quota = cpu_quota()
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        load = None
    return MachineState(load_average=load, cpus=min(cpus, math.ceil(quota)) if quota else cpus, physical_cores=len(physical_cores()),
                        threads=default_threads(), governor=governor(),
                        others=tuple(u for u in used if 100 * u[0] > LISTED_PCT))  # fmt: skip


def check_machine(require_quiet: bool, report: Callable[[str], None] | None) -> MachineState | None:
    """Before a sweep: one line about the machine (``report``), and with ``require_quiet`` a refusal
    (``DeployBenchError``, exit status 2) when it is busy. Nothing at all when neither is asked for."""
    if report is None and not require_quiet:
        return None
    state = machine_state()
    if report is not None:
        report(state.line())
    busy = state.busy_reasons()
    if require_quiet and busy:
        raise DeployBenchError(f"the machine is busy (--require-quiet): {'; '.join(busy)}; wait for it to calm down, or run without --require-quiet")
    return state
