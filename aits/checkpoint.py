"""Checkpoint and data-set files: tensors and plain data only, written atomically, loaded safely.

Files load with ``torch.load(weights_only=True)``: a file that would run code when unpickled is
refused, never executed. Each file records a SHA-256 of its content, verified on load, and a
checkpoint whose policy weights are not finite is refused.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import secrets
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch

from aits import __version__
from aits.errors import EnvironmentFault, UserError, clip

FORMAT = "aits"
FORMAT_VERSION = 2  # 2: with a content hash
READABLE_VERSIONS = (1, 2)
FILE_KINDS = ("checkpoint", "dataset")  # what a file written by save() holds


def atomic_write(path: Path, write: Any) -> None:
    """Call ``write(file_object)`` on a temporary file beside ``path``, then rename it into place.

    The file gets the mode that the umask gives a new file. A failed write leaves the old file (if
    any) and no temporary file; the failure is an :class:`EnvironmentFault` naming the file and the
    cause (disk full, file too large, permission, ...)."""
    tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        try:
            with os.fdopen(fd, "wb") as f:
                write(f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise EnvironmentFault(f"cannot write {clip(str(path), 200)}: {exc.strerror or exc}") from None


def content_hash(data: dict) -> str:
    """SHA-256 of everything in ``data`` except its ``content_hash`` (tensors by dtype, shape and bytes)."""
    digest = hashlib.sha256()
    _feed(digest, {k: v for k, v in data.items() if k != "content_hash"})
    return digest.hexdigest()


def _feed(digest: Any, obj: Any) -> None:
    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous().reshape(-1)
        digest.update(f"T{t.dtype}{tuple(obj.shape)}".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes())
    elif isinstance(obj, dict):
        digest.update(f"D{len(obj)}".encode())
        for key in sorted(obj, key=repr):
            _feed(digest, key)
            _feed(digest, obj[key])
    elif isinstance(obj, (list, tuple)):
        digest.update(f"{type(obj).__name__[0]}{len(obj)}".encode())
        for item in obj:
            _feed(digest, item)
    else:
        digest.update(f"{type(obj).__name__}:{obj!r};".encode())


def save(path: Path, kind: str, payload: dict) -> Path:
    """Write ``payload`` with the format header and its content hash, atomically."""
    assert kind in FILE_KINDS
    data = {"format": FORMAT, "format_version": FORMAT_VERSION, "aits_version": __version__, "kind": kind, **payload}
    data["content_hash"] = content_hash(data)
    blob = io.BytesIO()  # serialised first: a failed write is then an OSError with its cause
    torch.save(data, blob)
    atomic_write(path, lambda f: f.write(blob.getbuffer()))
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
    if data.get("format_version") not in READABLE_VERSIONS:
        raise UserError(
            f"{path}: file format version {clip(repr(data.get('format_version')), 40)} is not supported "
            f"(this aits {__version__} reads versions {', '.join(map(str, READABLE_VERSIONS))})"
        )
    if kind is not None and data.get("kind") != kind:
        raise UserError(f"{path}: is a {clip(str(data.get('kind')), 40)}, expected a {kind}")
    if data["format_version"] >= 2 and data.get("content_hash") != content_hash(data):
        raise UserError(f"{path}: corrupt file: its content does not match the hash recorded when it was written")
    if data.get("kind") == "checkpoint":
        _refuse_nonfinite_weights(path, data.get("model"))
    return data


def _refuse_nonfinite_weights(path: Path, model: Any) -> None:
    for name, tensor in (model.items() if isinstance(model, dict) else ()):
        if isinstance(tensor, torch.Tensor) and tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise UserError(f"{path}: the policy's weights are not finite (NaN or inf in {clip(str(name), 60)}); "
                            "refusing a corrupt checkpoint")
