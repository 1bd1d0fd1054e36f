"""Exclusive locks on run directories, held while a command runs, so that two processes never
write into one run; taking a lock also removes the temporary files of writes that were killed."""

from __future__ import annotations

import os
from pathlib import Path

from aits.errors import UserError

try:
    import fcntl
except ImportError:  # pragma: no cover - not on POSIX: runs are not locked
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = ".lock"
_held: dict[Path, int] = {}  # resolved run directory -> the open descriptor that holds its lock


def lock_run_dir(path: Path) -> None:
    """Take the exclusive lock of run directory ``path`` for the rest of the command, or raise a
    :class:`UserError` when another process holds it. Then remove stale ``.*.tmp`` files."""
    key = path.resolve()
    if key in _held or fcntl is None:
        return
    fd = os.open(key / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        owner = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise UserError(f"run directory {path} is in use by another aits process (pid {owner}); "
                        "wait for it to finish or choose another --out") from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    _held[key] = fd
    for folder in (key, key / "checkpoints"):  # no live process writes here now: these were killed writes
        for stale in folder.glob(".*.tmp"):
            stale.unlink(missing_ok=True)


def release_all() -> None:
    """Release every lock this process holds (closing the descriptor drops the lock)."""
    while _held:
        os.close(_held.popitem()[1])
