"""A sweep's progress on the terminal, one line per finished experiment, and at the end where its time went."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from framework.results.record import Experiment, Result


@dataclass
class Progress:
    """One line per finished experiment: a bar, the count, the time left at the pace so far, the outcome."""

    total: int
    report: Callable[[str], None]
    done: int = 0
    started: float = field(default_factory=time.monotonic)
    phases: dict[str, float] = field(default_factory=dict)  # preparing, measuring, report: wall seconds
    slots: int = 1  # experiments measured at once (--executor ray: the cluster's slots for the sweep's devices)
    processes: int = 0
    process_s: float = 0.0
    preparation: dict[str, float] = field(default_factory=dict)  # seconds of each preparation step, over the shapes

    def __call__(self, experiment: Experiment, outcome: str, finished: bool = True) -> None:
        self.done += finished
        filled = round(20 * self.done / max(self.total, 1))
        elapsed = time.monotonic() - self.started
        eta = elapsed / self.done * (self.total - self.done) if self.done else float("nan")
        eta_text = f"ETA {int(eta // 60)}:{int(eta % 60):02d}" if not math.isnan(eta) else "ETA ?"
        self.report(f"[{'#' * filled}{'.' * (20 - filled)}] {self.done}/{self.total} {eta_text} {experiment.name}: {outcome}")

    def ran(self, result: Result) -> None:
        """An experiment's process ended (each of them with ``--repeats``): its seconds count as slot time."""
        if "process" in result.stages_s:
            self.processes += 1
            self.process_s += result.stages_s["process"]

    @contextlib.contextmanager
    def phase(self, name: str):
        start = time.monotonic()
        try:
            yield
        finally:
            self.phases[name] = self.phases.get(name, 0.0) + time.monotonic() - start

    def _preparation_text(self) -> str:
        """The preparation's steps; what is left of its time went to starting its process (imports)."""
        if not self.preparation:
            return ""
        rest = self.phases.get("preparing", 0.0) - sum(self.preparation.values())
        steps = {"starting": rest, **self.preparation} if rest >= 0.05 else self.preparation
        return " (" + ", ".join(f"{stage} {_duration(seconds)}" for stage, seconds in steps.items()) + ")"

    def time_text(self) -> str:
        """Where the sweep's wall time went, and how busy its measurement slots were while it measured."""
        parts = [f"{name} {_duration(seconds)}{self._preparation_text() if name == 'preparing' else ''}" for name, seconds in self.phases.items()]
        measuring = self.phases.get("measuring", 0.0)
        if self.processes and measuring > 0:
            busy = self.process_s / (self.slots * measuring)
            where = f"{self.slots} slots" if self.slots > 1 else "1 slot"
            parts.append(
                f"{self.processes} experiment process{'es' if self.processes != 1 else ''}, {_duration(self.process_s)} in all, "
                f"on {where}: busy {busy:.0%} of the measuring time"
            )
        return "time: " + "; ".join(parts)


def _duration(seconds: float) -> str:
    if seconds < 59.95:
        return f"{seconds:.1f} s"
    whole = round(seconds)  # 119.6 s is 2 min 0 s, not 1 min 60 s
    return f"{whole // 60} min {whole % 60} s"
