"""The one exception type for problems the user can fix (bad input, missing files, ...)."""


class UserError(Exception):
    """A problem in the user's input: reported as one line, exit code 2, no traceback."""


class RunFailed(Exception):
    """A run that started correctly but could not finish (e.g. a retrain cap was hit): exit code 1."""
