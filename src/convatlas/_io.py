"""The one way convatlas writes a file: atomically, durably, with ordinary permissions.

:func:`atomic_write` writes into a temporary file in the target's folder, gives it the mode
``open()`` would give a new file under the process's umask (``0o666 & ~umask``: readable by a web
server or another user where the umask allows; ``tempfile.mkstemp`` alone gives 0600), flushes
and ``fsync``s it, renames it over the target in one step (``os.replace``) and syncs the folder.
A crash leaves either the old file or the new one, never half of one, and an error leaves the
old file untouched and no temporary file behind. Every file the project writes - runs,
checkpoints, charts, reports, the atlas, dataset caches and downloads - goes through here.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import threading
from pathlib import Path
from typing import IO, Any, Callable

__all__ = [
    "atomic_write", "atomic_write_text", "atomic_write_bytes", "atomic_save", "write_json", "write_yaml",
    "json_safe", "new_file_mode",
]

_UMASK_LOCK = threading.Lock()


def new_file_mode() -> int:
    """The permission bits ``open(path, "w")`` would give a new file now: ``0o666 & ~umask``."""
    with _UMASK_LOCK:  # the only way to read the umask is to set it; do it under a lock
        mask = os.umask(0o022)
        os.umask(mask)
    return 0o666 & ~mask


def _sync_folder(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # a folder that cannot be opened (Windows): the rename itself is enough
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike[str], write: Callable[[IO[Any]], Any], *, binary: bool = False) -> Path:
    """Call ``write(file)`` on a temporary file beside ``path``, then move it into place.

    ``file`` is opened in binary mode when ``binary`` is true, else as UTF-8 text with no newline
    translation. Returns ``path``.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, new_file_mode())
        with os.fdopen(fd, "wb" if binary else "w", **({} if binary else {"encoding": "utf-8", "newline": ""})) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    _sync_folder(target.parent)
    return target


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    return atomic_write(path, lambda f: f.write(text))


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    return atomic_write(path, lambda f: f.write(data), binary=True)


def atomic_save(path: str | os.PathLike[str], save: Callable[[IO[bytes]], Any]) -> Path:
    """``save(file)`` into a binary file: ``atomic_save(p, lambda f: fig.savefig(f, format="png"))``."""
    return atomic_write(path, save, binary=True)


def json_safe(value: Any) -> Any:
    """JSON-safe: NaN and infinities become None (JSON has no NaN); tuples become lists."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def write_json(path: str | os.PathLike[str], data: Any, *, indent: int | None = 2, sort_keys: bool = False) -> Path:
    return atomic_write_text(path, json.dumps(json_safe(data), indent=indent, sort_keys=sort_keys) + "\n")


def write_yaml(path: str | os.PathLike[str], data: Any) -> Path:
    import yaml

    return atomic_write_text(path, yaml.safe_dump(json_safe(data), sort_keys=False))
