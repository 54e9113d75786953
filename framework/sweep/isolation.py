"""Each experiment in a fresh child process, so its memory, caches and timings are its own.

Children are forked from a multiprocessing fork server that has imported torch, torchvision and onnxruntime
but never run anything: a child starts in milliseconds instead of the seconds those imports take, and still
shares no allocator, session or thread pool with the parent or with earlier experiments. The server starts
at the beginning of a run (``start_fork_server``), importing while the parent exports.

The parent writes ``job.json`` into the experiment's folder; the child (``python -m framework.sweep.isolation
JOB``, which also reproduces a run by hand) runs ``experiment.run`` on it and saves the result. A child that
crashes (segfault, out-of-memory kill, CUDA error) or outlives the timeout becomes a failed result with its
exit status and the tail of its log (``child.log``); the sweep goes on.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import multiprocessing
import multiprocessing.forkserver
import os
import select
import shutil
import signal
import sys
import threading
import time
import types
from pathlib import Path

from framework.results.record import Result
from framework.results.store import read_result, save_result
from framework.sweep.job import Job

LOG_TAIL_LINES = 20
JOIN_POLL_S = 0.5  # how long the parent waits on a child between two looks at its own signals
STAGING_PREFIX = ".incoming-"  # <experiment>/.incoming-<run id>/: what a child writes
PR_SET_PDEATHSIG = 1
ROLE_VARIABLE = "DEPLOYBENCH_ROLE"
PRELOAD = ("numpy", "torch", "torchvision", "onnxruntime", "framework.sweep.experiment")
_context = None


def start_fork_server() -> multiprocessing.context.BaseContext:
    """Start (once per process) the fork server children come from; it imports ``PRELOAD`` in the background."""
    global _context
    if _context is None:
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload([m for m in PRELOAD if importlib.util.find_spec(m.split(".")[0])])
        # The server imports before it ignores Ctrl-C itself: started with SIGINT ignored (inherited through
        # exec), an early Ctrl-C stops the sweep without a 40-line traceback from the server's imports.
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if threading.current_thread() is threading.main_thread() else None
        try:
            multiprocessing.forkserver.ensure_running()
        finally:
            if previous is not None:
                signal.signal(signal.SIGINT, previous)
        _context = context
    return _context


def run_and_save(job: Job) -> Result:
    """In this process (``--in-process``): run the job, save the result in the job's folder."""
    from framework.sweep.experiment import run

    started_at, start = time.time(), time.perf_counter()
    result = with_process_time(run(job), started_at, start)
    save_result(job.result_dir, result)
    return result


def with_process_time(result: Result, started_at: float, start: float) -> Result:
    """The result with when its process started and how long it took, start to result (``Result.stages_s``)."""
    process_s = round(time.perf_counter() - start, 4)
    return dataclasses.replace(result, started_at=round(started_at, 3), stages_s={**result.stages_s, "process": process_s})


def run_child(target, args: tuple, timeout_s: float, role: str, rerun_main: bool = True) -> int | None:
    """Run ``target(*args)`` in a fresh child of the fork server that dies with this process, in this process's
    environment as it is now (the server's dates from its start; variables read when a library loads, like
    OMP_NUM_THREADS, keep the server's values) plus ``DEPLOYBENCH_ROLE=role`` (``preparation`` or
    ``experiment``: a model's code can tell where it runs). Its exit code, or None when it outlived
    ``timeout_s`` and was killed. Ctrl-C here kills it first. ``rerun_main`` False: the child does not run
    this process's ``__main__`` again (``_main_unseen``)."""
    environ = {**os.environ, ROLE_VARIABLE: role}
    child = start_fork_server().Process(target=_guarded, args=(os.getpid(), environ, target, args), daemon=True)
    with contextlib.nullcontext() if rerun_main else _main_unseen():
        child.start()
    try:
        deadline = time.monotonic() + timeout_s
        while child.is_alive() and time.monotonic() < deadline:  # back to Python often: a Ctrl-C that reached
            child.join(min(JOIN_POLL_S, max(0.0, deadline - time.monotonic())))  # another thread still stops the run
    except BaseException:  # Ctrl-C or SIGTERM in the parent: never leave a child measuring
        _kill_group(child)
        raise
    timed_out = child.is_alive()
    _kill_group(child)  # what the child started and left behind (compile workers) goes too
    return None if timed_out else child.exitcode


@contextlib.contextmanager
def _main_unseen():
    """multiprocessing runs the parent's ``__main__`` file again in each child before it unpickles the target
    (Python 3.11's fork server never preloads it). Where it holds nothing a child needs (a Ray worker's
    ``default_worker.py``, which imports Ray: 0.4-0.6 s of every experiment on the 2-core VM) the child is
    started while ``__main__`` is a bare module: it names no file and the child runs nothing."""
    main = sys.modules["__main__"]
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        sys.modules["__main__"] = main


def _kill_group(child) -> None:
    """Kill the child's process group (it leads one: ``_guarded``) and the child, and reap it. A group id is
    not handed out again while a process of that group lives, so this never reaches another group."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(child.pid, signal.SIGKILL)
    if child.is_alive():
        child.kill()
    child.join()


def _guarded(parent_pid: int, environ: dict, target, args: tuple) -> None:
    """In the child: die with the sweep's process, and never start for a sweep already gone (a fork it
    requested can be served seconds after it was killed)."""
    _die_with_parent()
    _die_with_sweep(parent_pid)
    os.setpgid(0, 0)  # a group of its own: a timeout or Ctrl-C kills what it started too (``_kill_group``)
    os.environ.clear()
    os.environ.update(environ)
    if target is _child_entry:  # an experiment: --pin puts it on its CPUs before it runs (its threads follow)
        with contextlib.suppress(Exception):  # unreadable job or refused CPUs: the engine's load says so, in the result
            cpus = Job.read(Path(args[0])).measure.engine_options.get("cpus")
            if cpus:
                os.sched_setaffinity(0, cpus)
    target(*args)


def run_in_child(job: Job, timeout_s: float, rerun_main: bool = True) -> Result:
    """Run one job in a child process and save its result; a failed result with the reason, exit status and
    log tail when the child died or timed out first.

    The child writes only into a staging folder of its own (``.incoming-<run id>``); this process, which
    holds the results lock, moves the result into place, so no child can overwrite a later run's results.
    """
    job.result_dir.mkdir(parents=True, exist_ok=True)
    job_path = job.write(job.result_dir / "job.json")
    staging = job.result_dir / f"{STAGING_PREFIX}{job.run_id}"
    staging.mkdir()
    started_at, start = time.time(), time.perf_counter()
    code = run_child(_child_entry, (str(job_path), str(staging)), timeout_s, "experiment", rerun_main)
    result = read_result(staging)
    log = staging / "child.log"
    tail = log.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:] if log.exists() else []
    if code != 0 or result is None or result.run_id != job.run_id:
        outcome = f"timed out after {round(timeout_s, 1):g} s (child process killed)" if code is None else describe_exit(code)
        last = next((line.strip() for line in reversed(tail) if line.strip()), "")
        result = job.pending_result().ended("failed", outcome + (f": {last}" if last else ""), exit_status=code, log_tail="\n".join(tail))
    result = with_process_time(result, started_at, start)
    save_result(job.result_dir, result)
    if log.exists():
        log.replace(job.result_dir / "child.log")
    shutil.rmtree(staging, ignore_errors=True)
    return result


def describe_exit(code: int) -> str:
    if code == 0:
        return "child process exited without saving a result"
    if code < 0:
        try:
            return f"child process killed by {signal.Signals(-code).name} (exit status {code})"
        except ValueError:
            return f"child process killed by signal {-code}"
    return f"child process exited with status {code}"


def _child_entry(job_path: str, staging: str) -> None:
    """Runs in the forked child; everything it prints goes to ``child.log`` (its tail explains a crash)."""
    log = os.open(Path(staging) / "child.log", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    try:
        from framework.sweep.experiment import run

        save_result(Path(staging), run(Job.read(Path(job_path))))
    finally:
        sys.stdout.flush()
        sys.stderr.flush()


def _die_with_sweep(pid: int) -> None:
    """SIGKILL this process as soon as the sweep's process ``pid`` exits, however it exits: a daemon thread
    waits on a pidfd (Linux >= 5.3; elsewhere it polls every 0.2 s). The fork server's own exit (see
    ``_die_with_parent``) can take seconds under load while the interpreter finalises torch and onnxruntime."""
    try:
        handle = os.pidfd_open(pid)
    except ProcessLookupError:
        os._exit(3)  # the sweep is already gone: measure nothing, write nothing
    except (AttributeError, OSError):
        handle = None
    if handle is None and not _alive(pid):
        os._exit(3)

    def watch() -> None:
        if handle is not None:
            select.select([handle], [], [])
        else:
            while _alive(pid):
                time.sleep(0.2)
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="deploybench-watch-sweep", daemon=True).start()


def _die_with_parent() -> None:
    """Linux: SIGKILL this process when its parent (the fork server) exits. multiprocessing hands every child
    the write end of the pipe whose end-of-file tells the server its clients are gone; a child that kept it
    would keep the server alive after the sweep died, and itself with it: the child closes it."""
    server = multiprocessing.forkserver._forkserver
    if server._forkserver_alive_fd is not None:
        with contextlib.suppress(OSError):
            os.close(server._forkserver_alive_fd)
        server._forkserver_alive_fd = None
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the parent-alive check below still applies
        pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def main(argv: list[str]) -> int:
    """``python -m framework.sweep.isolation JOB.json``: measure one experiment again, by hand, in this
    process, under the results lock, then rebuild the model's tables."""
    from framework.errors import DeployBenchError
    from framework.locking import results_lock
    from framework.results.tables import write_model_tables

    try:
        job = Job.read(Path(argv[0]))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        print(f"deploybench: error: {argv[0]}: not a job written by deploybench ({type(exc).__name__}: {exc})", file=sys.stderr)
        return 2
    try:
        with results_lock(job.model_dir):
            result = run_and_save(job)
            write_model_tables(job.model_dir)
    except DeployBenchError as exc:
        print(f"deploybench: error: {exc}", file=sys.stderr)
        return 2
    print(f"{result.experiment.name}: {result.status}{': ' + result.reason if result.reason else ''}; saved in {job.result_dir}")
    return 0 if result.status != "failed" else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
