"""A cache of built artifacts (ONNX exports, fp16/int8 graphs, calibration tables, TensorRT engines) you can trust.

Each cached file ``F`` has ``F.meta.json`` beside it holding the settings that produced it (model weights
hash, config, precision, profile, library versions, GPU: whatever the caller says changes it) and the file's
SHA-256. The file is reused only when today's settings are identical and the file still has its recorded
hash; otherwise it is rebuilt, with the reason. A truncated or corrupted file is therefore never used.
"""

from __future__ import annotations

import hashlib
import json
import mmap
import warnings
from collections.abc import Callable
from pathlib import Path

from framework.files import write_json


def settings_hash(settings: dict) -> str:
    """Stable digest of everything that changes an artifact."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()


_hashes: dict[tuple, str] = {}  # (path, size, mtime, inode) -> digest: a file checked once per process


def file_sha256(path: Path) -> str:
    """SHA-256 of a file, hashed through mmap (no copies); remembered while the file is unchanged."""
    path = Path(path).resolve()
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns, stat.st_ino)
    if key not in _hashes:
        with path.open("rb") as handle:
            if stat.st_size == 0:
                _hashes[key] = hashlib.sha256().hexdigest()
            else:
                with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
                    _hashes[key] = hashlib.sha256(mapped).hexdigest()
    return _hashes[key]


def meta_path(path: Path) -> Path:
    return Path(path).with_name(Path(path).name + ".meta.json")


def is_current(path: Path, settings: dict) -> tuple[bool, str]:
    """(reusable, why): reusable only when the recorded settings equal ``settings`` and the hash still matches."""
    path, meta = Path(path), meta_path(path)
    if not path.is_file() or not meta.is_file():
        return False, "not cached"
    try:
        recorded = json.loads(meta.read_text())
    except (OSError, ValueError):
        return False, "rebuilding: cache metadata unreadable"
    if recorded.get("settings_hash") != settings_hash(settings):
        old = recorded.get("settings", {})
        changed = sorted(k for k in set(old) | set(settings) if old.get(k) != settings.get(k))
        return False, f"rebuilding: {', '.join(changed) or 'settings'} changed"
    if recorded.get("file_sha256") != file_sha256(path):
        return False, f"rebuilding: {path.name} does not match its recorded hash (truncated or corrupted)"
    return True, "reused from cache"


def record_built(path: Path, settings: dict, info: dict | None = None) -> None:
    """Store the settings and hash of a file just built; ``info`` is returned on later cache hits."""
    write_json(meta_path(path), {"settings": settings, "settings_hash": settings_hash(settings),
                                 "file_sha256": file_sha256(path), "info": info or {}})  # fmt: skip


def cached_build(path: Path, settings: dict, build: Callable[[Path], dict | None]) -> tuple[dict, bool, str]:
    """Reuse ``path`` if it is current, else ``build(path)`` and record it. Returns (info, reused, why)."""
    reusable, why = is_current(path, settings)
    if reusable:
        return json.loads(meta_path(path).read_text()).get("info", {}), True, why
    if "hash" in why or "unreadable" in why:
        warnings.warn(f"{path}: {why}", stacklevel=2)
    meta_path(path).unlink(missing_ok=True)  # a build interrupted half-way must not look current
    info = build(Path(path)) or {}
    record_built(path, settings, info)
    return info, False, why
