"""Checkpoint and data-set files: tensors and plain data only, written atomically, loaded safely.

Files load with ``torch.load(weights_only=True)``: a file that would run code when unpickled is
refused, never executed.
"""

from __future__ import annotations

import os
import pickle
import tempfile
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch

from aits import __version__
from aits.errors import UserError

FORMAT = "aits"
FORMAT_VERSION = 1
KINDS = ("checkpoint", "dataset")


def atomic_write(path: Path, write: Any) -> None:
    """Call ``write(file_object)`` on a temporary file beside ``path``, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save(path: Path, kind: str, payload: dict) -> Path:
    """Write ``payload`` with the format header, atomically."""
    assert kind in KINDS
    data = {"format": FORMAT, "format_version": FORMAT_VERSION, "aits_version": __version__, "kind": kind, **payload}
    atomic_write(path, lambda f: torch.save(data, f))
    return path


def load(path: Path, kind: str | None = None) -> dict:
    """Read an aits file safely; any problem is a one-line :class:`UserError` naming the file."""
    if not path.exists():
        raise UserError(f"file not found: {path}")
    if path.is_dir():
        raise UserError(f"{path} is a directory, expected an aits {kind or 'file'}")
    if not zipfile.is_zipfile(path):  # torch.save writes a zip archive; nothing else is unpickled at all
        raise UserError(f"{path}: unreadable, truncated or not an aits file (not a complete torch zip archive)")
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols of foreign files
            warnings.simplefilter("ignore")
            data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "GLOBAL" in str(exc) or "Unsupported global" in str(exc):  # it names a class or function
            raise UserError(f"{path}: refused to load: it holds Python objects, not plain data (unsafe to unpickle)") from None
        raise UserError(f"{path}: not a valid aits file (corrupt, or not written by aits)") from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile, AttributeError, KeyError, IndexError,
            TypeError, UnicodeDecodeError, MemoryError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise UserError(f"{path}: unreadable or truncated aits file ({type(exc).__name__}: {reason[:120]})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise UserError(f"{path}: not an aits file")
    if data.get("format_version") != FORMAT_VERSION:
        raise UserError(
            f"{path}: file format version {data.get('format_version')!r} is not supported "
            f"(this aits {__version__} reads version {FORMAT_VERSION})"
        )
    if kind is not None and data.get("kind") != kind:
        raise UserError(f"{path}: is a {data.get('kind')}, expected a {kind}")
    return data
