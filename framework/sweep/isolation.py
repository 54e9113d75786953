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

import importlib.util
import multiprocessing
import multiprocessing.forkserver
import os
import signal
import sys
from pathlib import Path

from framework.results.record import Result
from framework.results.store import read_result, save_result
from framework.sweep.job import Job

LOG_TAIL_LINES = 20
PRELOAD = ("numpy", "torch", "torchvision", "onnxruntime", "framework.sweep.experiment")
_context = None


def start_fork_server() -> multiprocessing.context.BaseContext:
    """Start (once per process) the fork server children come from; it imports ``PRELOAD`` in the background."""
    global _context
    if _context is None:
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload([m for m in PRELOAD if importlib.util.find_spec(m.split(".")[0])])
        multiprocessing.forkserver.ensure_running()
        _context = context
    return _context


def run_and_save(job: Job) -> Result:
    """What every executor does with a job: run it, save the result in the job's folder."""
    from framework.sweep.experiment import run

    result = run(job)
    save_result(job.result_dir, result)
    return result


def run_in_child(job: Job, timeout_s: float) -> Result:
    """Run one job in a child process; its saved result, or a failed one with the reason, exit status and
    log tail when the child died or timed out before saving."""
    job.result_dir.mkdir(parents=True, exist_ok=True)
    job_path = job.write(job.result_dir / "job.json")
    log_path = job.result_dir / "child.log"
    child = start_fork_server().Process(target=_child_entry, args=(str(job_path), str(log_path), dict(os.environ)), daemon=True)
    child.start()
    try:
        child.join(timeout_s)
    except BaseException:  # Ctrl-C or SIGTERM in the parent: never leave a child measuring
        child.kill()
        child.join()
        raise
    outcome = None
    if child.is_alive():
        child.kill()
        child.join()
        outcome = f"timed out after {timeout_s:g} s (child process killed)"
    elif child.exitcode != 0:
        outcome = _describe_exit(child.exitcode)
    result = read_result(job.result_dir)
    if outcome is None and result is not None and result.run_id == job.run_id:
        return result
    tail = log_path.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:] if log_path.exists() else []
    outcome = outcome or "child process exited without saving a result"
    last = next((line.strip() for line in reversed(tail) if line.strip()), "")
    failed = job.pending_result().ended("failed", outcome + (f": {last}" if last else ""), exit_status=child.exitcode, log_tail="\n".join(tail))
    save_result(job.result_dir, failed)
    return failed


def _describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"child process killed by {signal.Signals(-code).name} (exit status {code})"
        except ValueError:
            return f"child process killed by signal {-code}"
    return f"child process exited with status {code}"


def _child_entry(job_path: str, log_path: str, environ: dict) -> None:
    """Runs in the forked child: the parent's environment as it is now (the server's dates from its start;
    variables read when a library loads, like OMP_NUM_THREADS, keep the server's values), and everything it
    prints goes to ``child.log`` (its tail explains a crash)."""
    os.environ.clear()
    os.environ.update(environ)
    log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    try:
        main([job_path])
    finally:
        sys.stdout.flush()
        sys.stderr.flush()


def main(argv: list[str]) -> int:
    """``python -m framework.sweep.isolation JOB.json``: measure one experiment again, by hand."""
    result = run_and_save(Job.read(Path(argv[0])))
    print(f"{result.experiment.name}: {result.status} {result.reason}".rstrip())
    return 0 if result.status != "failed" else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
