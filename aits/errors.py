"""The exception types the command line turns into one line, and the classification of the
others that have a known cause (file system, memory, nesting, overflow)."""

from __future__ import annotations

import difflib
import errno
import re
import reprlib


class UserError(Exception):
    """A problem in the user's input: reported as one line, exit code 2, no traceback."""


class PluginError(UserError):
    """A plugin registered something aits cannot use: ``detail`` says what, the message also which plugin."""

    def __init__(self, plugin: str, source: str, detail: str) -> None:
        super().__init__(f"aits plugin {plugin!r} ({source}): {detail}")
        self.plugin, self.source, self.detail = plugin, source, detail


class RunFailed(Exception):
    """A run that started correctly but could not finish (e.g. a retrain cap was hit): exit code 1."""


class EnvironmentFault(Exception):
    """A problem of the machine or installation, not of the input (disk full, file too large,
    permission denied, a broken plugin in strict mode): exit code 1."""


def suggestion(key: str, known: list[str], prefix: str = "") -> str:
    """``"; did you mean <prefix><closest>?"``, or the list of known names when none is close."""
    close = difflib.get_close_matches(key, known, n=1)
    return f"; did you mean {prefix}{close[0]}?" if close else f" (known: {', '.join(known)})"


_SHORT = reprlib.Repr()
_SHORT.maxlevel, _SHORT.maxlist, _SHORT.maxtuple, _SHORT.maxdict, _SHORT.maxset = 3, 6, 6, 6, 6
_SHORT.maxstring = _SHORT.maxother = _SHORT.maxlong = 60


def shown(value: object) -> str:
    """``repr(value)`` bounded in size and in the work it takes, for error messages (a value may be
    a deeply nested or alias-expanded structure)."""
    return _SHORT.repr(value)


def clip(text: str, limit: int = 160) -> str:
    """``text`` on one line, at most ``limit`` characters (the middle elided)."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else f"{text[: limit * 2 // 3]}…{text[-(limit // 3 - 1):]}"


# errno values that a bad argument causes (a path too long, missing, not a directory, ...): exit 2.
INPUT_ERRNOS = {errno.ENAMETOOLONG, errno.ENOENT, errno.ENOTDIR, errno.EISDIR, errno.ELOOP, errno.EINVAL,
                errno.EEXIST}


def classify(exc: BaseException) -> tuple[str, int] | None:
    """One line and an exit code for an exception with a known, non-bug cause, else None.

    Exit 2 when the input caused it (a path too long or missing, nesting too deep, a number too
    large), 1 when the environment did (disk full, file too large, permission, out of memory)."""
    if isinstance(exc, OSError):
        where = f"{clip(exc.filename, 120)}: " if exc.filename else ""
        cause = exc.strerror or clip(str(exc)) or type(exc).__name__
        return f"{where}{cause}", 2 if exc.errno in INPUT_ERRNOS else 1
    if isinstance(exc, MemoryError) or _out_of_memory(exc):
        tried = re.search(r"tried to allocate ([\d.]+ ?[KMGT]?i?B\b|\d+ bytes)", str(exc), re.IGNORECASE)
        return f"out of memory ({type(exc).__name__}" + (f": tried to allocate {tried[1]})" if tried else
                                                        f": {clip(str(exc))})" if str(exc) else ")"), 1
    if isinstance(exc, RecursionError):
        return "the input is nested too deeply to process (RecursionError)", 2
    if isinstance(exc, OverflowError):
        return f"a number in the input is too large ({clip(str(exc))})", 2
    return None


def _out_of_memory(exc: BaseException) -> bool:
    """torch's allocation failures (CPU allocator, CUDA out-of-memory), which are RuntimeErrors."""
    text = str(exc)
    return isinstance(exc, RuntimeError) and ("can't allocate memory" in text or "out of memory" in text.lower()
                                              or type(exc).__name__ == "OutOfMemoryError")
