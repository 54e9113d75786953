"""One run at a time per results folder, through a kernel lock; Ctrl-C and SIGTERM that keep results.

Two runs writing the same model's results at once would overwrite each other's experiments and tables, so
the second is refused with the first one's PID. The lock is ``fcntl.flock`` on ``<model>/.deploybench.lock``:
the kernel releases it when its holder dies, however it dies, so a dead holder needs no recovery and two
runs can never both hold it (a check-then-unlink recovery of a lock *file* is a race: two runs recovering
the same stale file both went on, in 116 of 200 trials). The file stays; it names the last holder.
A process that holds the lock may take it again (nested ``results_lock``): the CLI takes it before the heavy
imports, the sweep inside.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import signal
import socket
import time
from contextlib import contextmanager
from pathlib import Path

from framework.errors import DeployBenchError

LOCK_NAME = ".deploybench.lock"
_held: dict[Path, int] = {}  # folder -> nesting depth, in this process


def _describe_holder(path: Path) -> str:
    try:
        holder = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        holder = {}
    if not isinstance(holder, dict) or "pid" not in holder:
        return "another process"
    pid, host, started = (" ".join(str(holder.get(k, "?")).split())[:60] for k in ("pid", "host", "started"))
    return f"PID {pid} on {host}, since {started}"


@contextmanager
def results_lock(folder: Path):
    """Hold the folder's lock for the duration of a run; DeployBenchError when another process holds it."""
    folder = Path(folder).resolve()
    if folder in _held:
        _held[folder] += 1
        try:
            yield folder / LOCK_NAME
        finally:
            _held[folder] -= 1
        return
    path = folder / LOCK_NAME
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)  # a link there must not redirect the write
    except OSError as exc:
        why = "it is a symbolic link; remove it" if exc.errno == errno.ELOOP else exc.strerror
        raise DeployBenchError(f"cannot open the lock file {path}: {why}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise DeployBenchError(f"{folder} is in use by another deploybench run ({_describe_holder(path)}); wait for it to finish") from None
    _held[folder] = 1
    try:
        _write_holder(fd)
        yield path
    finally:
        del _held[folder]
        os.close(fd)  # releases the lock


def _write_holder(fd: int) -> None:
    """Name the holder in the lock file, for the message a refused run prints (best effort: a full disk
    must not stop a run that holds the lock)."""
    me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    with contextlib.suppress(OSError):
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(me).encode(), 0)


def refuse_if_locked(folder: Path) -> None:
    """Refuse at once, creating nothing, when another process holds the folder's lock: a second run is told
    before it spends seconds importing libraries beside the run that is measuring."""
    path = Path(folder) / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return  # no lock file yet (or unreadable): the run's own results_lock decides
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise DeployBenchError(
            f"{Path(folder).resolve()} is in use by another deploybench run ({_describe_holder(path)}); wait for it to finish"
        ) from None
    finally:
        os.close(fd)


def holds_lock(folder: Path) -> bool:
    """Whether this process holds the folder's lock (only the holder writes results)."""
    return Path(folder).resolve() in _held


@contextmanager
def sigterm_as_interrupt():
    """Turn SIGTERM into KeyboardInterrupt, so ``kill`` unwinds like Ctrl-C: children stopped, lock released,
    tables rebuilt from the finished experiments. Only the main thread can install handlers."""
    try:
        previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    except ValueError:
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")
