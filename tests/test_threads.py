"""CPU threads, pinning and a quiet machine: the thread count reaches ONNX Runtime and PyTorch, --pin puts the
experiment's process on its CPUs, other processes' CPU time is seen (before a sweep and during each timed loop)."""

import contextlib
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from framework import machine_check
from framework.cli import main
from framework.machine_check import OtherProcessesCPU, default_threads, physical_cores, pin_set, usable_cpus
from framework.settings import SweepSettings
from tests.conftest import FIXTURE_MODELS, summaries

REPO = Path(__file__).resolve().parents[1]
MARKER = f"deploybench-test-busy-loop-{uuid.uuid4().hex[:8]}"  # this session's: other test runs may be running too
# Bounded: each loop stops by itself; two processes, so that they hold more than half a core between them
# even on a loaded 2-core machine.
BUSY = "# {}\nimport os, sys, time; os.fork(); end = time.monotonic() + float(sys.argv[1])\nwhile time.monotonic() < end: pass"


def busy_loop(seconds: float, detached: bool = False) -> list[int]:
    """Start two busy processes that stop by themselves after ``seconds``; their PIDs, once they run the loop.
    ``detached``: not this process's children (a shell starts them and exits), as another user's would be."""
    command, before = [sys.executable, "-c", BUSY.format(MARKER), str(seconds)], {p for p, _ in _processes_with(MARKER)}
    if detached:
        subprocess.run(["sh", "-c", '"$@" >/dev/null 2>&1 &', "sh", *command], check=True)
    else:
        subprocess.Popen(command)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        pids = [p for p, _ in _processes_with(MARKER) if p not in before]
        if len(pids) == 2:
            return pids
        time.sleep(0.02)
    raise AssertionError("the busy loop did not start")


def _processes_with(text: str) -> list[tuple[int, str]]:
    found = []
    for name in filter(str.isdigit, os.listdir("/proc")):
        try:
            command = Path(f"/proc/{name}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if command.startswith(f"{sys.executable} -c ") and text in command:  # not the shell that starts them
            found.append((int(name), command))
    return found


@pytest.fixture
def stop_busy_loops():
    yield
    for pid, _ in _processes_with(MARKER):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, 9)


def run(*args):
    quick = ["--iterations", "8", "--warmup", "2", "--min-duration", "0", "--quiet"]
    return main(["run", "tiny_cnn", "--models-dir", str(FIXTURE_MODELS), *quick, *args])


# ---- threads -----------------------------------------------------------------------------------------------


def test_the_default_threads_are_the_physical_cores_of_the_affinity_mask(monkeypatch):
    mask = usable_cpus()
    assert 1 <= default_threads() <= len(physical_cores()) <= len(mask)
    assert SweepSettings().measure.engine_options["threads"] == default_threads()
    os.sched_setaffinity(0, mask[:1])
    try:
        assert usable_cpus() == mask[:1] and default_threads() == 1
        assert SweepSettings().measure.engine_options == {"threads": 1}
    finally:
        os.sched_setaffinity(0, mask)
    # Two SMT siblings per core: CPUs 0 and 2 share core 0, 1 and 3 core 1.
    topology = {0: (0, 0), 1: (0, 1), 2: (0, 0), 3: (0, 1)}
    monkeypatch.setattr(machine_check, "_core_of", topology.get)
    monkeypatch.setattr(machine_check, "usable_cpus", lambda: [0, 1, 2, 3])
    monkeypatch.setattr(machine_check, "cpu_quota", lambda: None)
    assert physical_cores() == [[0, 2], [1, 3]] and pin_set(2) == [0, 1] and pin_set(1) == [0]
    assert machine_check.default_threads() <= 2
    monkeypatch.setattr(machine_check, "cpu_quota", lambda: 1.0)  # a container limited to one core
    assert machine_check.default_threads() == 1


def test_threads_and_pin_change_the_fingerprint_and_bad_values_are_refused():
    one, two, pinned = SweepSettings(threads=1), SweepSettings(threads=2), SweepSettings(threads=1, pin=True)
    assert one.measure.fingerprint_fields() != two.measure.fingerprint_fields() != pinned.measure.fingerprint_fields()
    assert pinned.measure.engine_options == {"threads": 1, "cpus": pin_set(1)}
    assert SweepSettings(threads=1).measure == SweepSettings(measure=one.measure).measure  # resolving twice changes nothing
    for bad, words in ((SweepSettings(threads=-1), "--threads"), (SweepSettings(threads=len(usable_cpus()) + 1), "--threads"),
                       (SweepSettings(pin=True, isolate=False), "--in-process"),
                       (SweepSettings(pin=True, threads=len(physical_cores()) + 1), "--threads")):  # fmt: skip
        with pytest.raises(Exception, match=words):
            bad.validate()


@pytest.mark.parametrize("in_process", [True, False], ids=["in-process", "isolated"])
def test_threads_reach_onnxruntime_and_torch(tmp_path, in_process):
    import torch

    before = torch.get_num_threads()
    assert run("--output", str(tmp_path / "one"), "--threads", "1", *(["--in-process"] if in_process else [])) == 0
    results = {r["engine"]: r for r in summaries(tmp_path / "one")}
    assert set(results) == {"pytorch-cpu", "onnxruntime-cpu"}
    for result in results.values():  # read back from torch.get_num_threads() and the session's options
        assert result["engine_settings"]["threads"] == 1, result["engine_settings"]
        assert list(result["engine_settings"]["affinity"]) == usable_cpus() and result["engine_settings"]["pinned"] is False
    assert torch.get_num_threads() == before  # an in-process engine leaves torch as it found it
    assert run("--output", str(tmp_path / "default"), *(["--in-process"] if in_process else [])) == 0
    assert {r["engine_settings"]["threads"] for r in summaries(tmp_path / "default")} == {default_threads()}


def test_pin_puts_the_experiments_process_on_its_cpus(tmp_path, capsys):
    assert run("--output", str(tmp_path / "one"), "--threads", "1", "--pin") == 0
    for result in summaries(tmp_path / "one"):
        settings = result["engine_settings"]
        assert list(settings["affinity"]) == pin_set(1) and settings["threads"] == 1 and settings["pinned"] is True, settings
    assert run("--output", str(tmp_path / "default"), "--pin") == 0  # the threads follow the pinned set
    for result in summaries(tmp_path / "default"):
        assert list(result["engine_settings"]["affinity"]) == pin_set(default_threads())
        assert result["engine_settings"]["threads"] == default_threads()
    assert os.sched_getaffinity(0) == set(usable_cpus())  # the sweep's own process is never pinned
    assert run("--output", str(tmp_path / "bad"), "--pin", "--in-process") == 2
    assert "--in-process has none" in capsys.readouterr().err


# ---- other processes ---------------------------------------------------------------------------------------


def test_the_sampler_names_a_busy_process_beside_it_and_not_its_own_work(monkeypatch, stop_busy_loops):
    """Only this test's own processes and the busy loops are looked at, and the warning's threshold is lowered
    to a tenth of a core, so other work on the machine (other test runs) decides nothing: the run's own busy
    children and its own busy thread are not counted; busy loops that are not its children are, and named."""
    from framework.measure.monitor import ResourceSampler

    scan = machine_check.scan_processes
    family = {os.getpid(), os.getppid()}
    monkeypatch.setattr(machine_check, "scan_processes", lambda: {k: v for k, v in scan().items() if k[0] in family or v[0] in family})
    monkeypatch.setattr(machine_check, "WARN_CORES", 0.1)
    with ResourceSampler(interval_s=0.01) as quiet:
        own = busy_loop(1.5)  # this process's children: its own work
        family.update(own)
        end = time.monotonic() + 1.5
        while time.monotonic() < end:
            pass
    assert quiet.summary()["warnings"] == [] and quiet.summary()["other_cpu_pct"] < 5, quiet.other_cpu.usage()
    for pid in own:
        os.kill(pid, 9)
    others = busy_loop(3, detached=True)
    family.update(others)
    with ResourceSampler(interval_s=0.01) as busy:
        time.sleep(1.5)
    summary = busy.summary()
    (warning,) = summary["warnings"]
    assert warning.startswith(f"other processes used {summary['other_cpu_pct']:.0f}% of a core during the timed loop: "), warning
    assert all(f"(PID {pid}, " in warning for pid in others) and MARKER in warning, warning


def test_the_warning_takes_more_than_half_a_core():
    used = [(0.45, 12, "python"), (0.1, 13, "sh")]
    assert machine_check.other_cpu_warning(0.5, used) is None
    assert machine_check.other_cpu_warning(0.55, used).startswith("other processes used 55% of a core during the timed loop: ")


def test_a_result_carries_the_warning_when_other_processes_compete(tmp_path, stop_busy_loops):
    busy_loop(15)  # this test's children, not the experiment's: other processes to it
    assert run("--output", str(tmp_path), "--engines", "onnxruntime-cpu", "--min-duration", "1") == 0
    (result,) = summaries(tmp_path)
    assert any(w.startswith("other processes used") and "% of a core during the timed loop: " in w for w in result["warnings"]), result["warnings"]


def test_other_processes_exclude_this_process_its_children_and_its_ancestors():
    parents = {10: 1, 20: 10, 30: 20, 40: 30, 50: 10, 60: 1}
    others = OtherProcessesCPU()
    others.pid = 30
    assert others._excluded(parents) == {30, 40, 20, 10, 1}
    others.ancestors = False
    assert others._excluded(parents) == {30, 40}


def test_require_quiet_refuses_a_busy_machine(tmp_path, stop_busy_loops):
    busy_loop(10)
    command = [sys.executable, "-m", "framework.cli", "run", "tiny_cnn", "--models-dir", str(FIXTURE_MODELS), "--output", str(tmp_path),
               "--require-quiet", "--iterations", "2", "--min-duration", "0"]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=REPO, check=False)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "the machine is busy (--require-quiet)" in done.stderr and ("busy: " in done.stderr or "busiest: " in done.stderr), done.stderr
    assert done.stdout.startswith("machine: load average ") and "BUSY (" in done.stdout
    assert not (tmp_path / "tiny_cnn").exists()
    state = machine_check.machine_state()
    assert state.cpus == len(usable_cpus()) and state.threads == default_threads()
