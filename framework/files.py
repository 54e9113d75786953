"""The one way files are written: to a temporary name beside the target, then renamed, so an interrupted
run never leaves half a file; and the one way names become path components."""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")
_UMASK = os.umask(0o022)
os.umask(_UMASK)  # read once, at import, and put back


def safe_component(text: str) -> str:
    """A single path component that cannot climb out of the results folder."""
    return _UNSAFE.sub("_", str(text)).strip("._") or "_"


def write_atomic(path: Path, data: str | bytes) -> None:
    """Write ``data`` to ``path`` whole or not at all (temporary file, then ``os.replace``)."""
    write_all_atomic({Path(path): data})


def write_all_atomic(files: dict[Path, str | bytes]) -> None:
    """Write several files, in order, each whole: every one is written to a temporary name first, and only
    when all are written (a full disk fails here, the old files untouched) are they renamed into place."""
    staged: list[tuple[str, Path]] = []
    try:
        for target, data in files.items():
            path = Path(target)
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
            staged.append((tmp, path))
            binary = isinstance(data, bytes)
            with os.fdopen(fd, "wb" if binary else "w", **({} if binary else {"newline": ""})) as handle:
                handle.write(data)
            os.chmod(tmp, 0o666 & ~_UMASK)  # as open() would make it: mkstemp's 0600 hid results from others
        for tmp, path in staged:
            os.replace(tmp, path)
    except BaseException:
        for tmp, _ in staged:
            Path(tmp).unlink(missing_ok=True)
        raise


def remove_leftovers(folder: Path) -> int:
    """Temporary files an interrupted writer left under ``folder`` (``.<name>.<random>.tmp``) and children's
    staging folders (``.incoming-*``); only the holder of the folder's lock calls this. Returns how many."""
    import shutil

    removed = 0
    for path in list(Path(folder).rglob(".*.tmp")) + list(Path(folder).rglob(".incoming-*")):
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed += 1
    return removed


def write_json(path: Path, data: object) -> None:
    write_atomic(path, json.dumps(data, indent=2, default=str) + "\n")
