"""The ``aits`` command line. Each command lives in its own module and imports heavy packages
(torch) only when it runs, so that ``aits --help`` answers quickly."""

from aits.cli import collect, generalize, inspect, plugins, simulate, sweep, train  # noqa: F401  (register commands)
from aits.cli.app import app


def main() -> None:
    app()
