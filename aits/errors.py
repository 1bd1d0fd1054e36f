"""The one exception type for problems the user can fix (bad input, missing files, ...)."""

import difflib


class UserError(Exception):
    """A problem in the user's input: reported as one line, exit code 2, no traceback."""


class PluginError(UserError):
    """A plugin registered something aits cannot use: ``detail`` says what, the message also which plugin."""

    def __init__(self, plugin: str, source: str, detail: str) -> None:
        super().__init__(f"aits plugin {plugin!r} ({source}): {detail}")
        self.plugin, self.source, self.detail = plugin, source, detail


class RunFailed(Exception):
    """A run that started correctly but could not finish (e.g. a retrain cap was hit): exit code 1."""


def suggestion(key: str, known: list[str], prefix: str = "") -> str:
    """``"; did you mean <prefix><closest>?"``, or the list of known names when none is close."""
    close = difflib.get_close_matches(key, known, n=1)
    return f"; did you mean {prefix}{close[0]}?" if close else f" (known: {', '.join(known)})"
