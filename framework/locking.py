"""One run at a time per results folder: a lock file naming its holder, and Ctrl-C/SIGTERM that keep results.

Two runs writing the same model's results at once would overwrite each other's experiments and tables, so
the second is refused with the first one's PID. A lock left by a process that no longer exists on this
host (killed with SIGKILL, machine rebooted) is recovered with a warning.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import time
import warnings
from contextlib import contextmanager
from pathlib import Path

from framework.errors import DeployBenchError

LOCK_NAME = ".deploybench.lock"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


@contextmanager
def results_lock(folder: Path):
    """Hold ``folder/.deploybench.lock`` for the duration of a run."""
    path = Path(folder) / LOCK_NAME
    me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                holder = json.loads(path.read_text())
            except (OSError, ValueError):
                holder = {}
            if holder.get("host") == me["host"] and isinstance(holder.get("pid"), int) and not _alive(holder["pid"]):
                warnings.warn(f"{path}: recovered a stale lock left by process {holder['pid']}, which no longer exists", stacklevel=3)
                path.unlink(missing_ok=True)
                continue
            raise DeployBenchError(
                f"{folder} is in use by another deploybench run (PID {holder.get('pid', '?')} on {holder.get('host', '?')}, "
                f"since {holder.get('started', '?')}); wait for it to finish, or delete {path} if that process is gone"
            ) from None
        except OSError as exc:
            raise DeployBenchError(f"cannot write to the results folder {folder}: {exc.strerror}") from None
        with os.fdopen(fd, "w") as handle:
            json.dump(me, handle)
        break
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)


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
