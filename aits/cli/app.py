"""The Typer application, the shared options and the one place where errors become exit codes."""

from __future__ import annotations

import contextlib
import functools
import os
import sys
import warnings
from pathlib import Path
from typing import Annotated, Any, Callable, Iterator, Optional

import typer

app = typer.Typer(
    name="aits",
    help="aits — train a neural network to choose the time step of an N-body integrator.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
_debug = {"on": False}


@app.callback()
def _root(debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks for errors.")] = False) -> None:
    _debug["on"] = debug


def fail(message: str, code: int) -> typer.Exit:
    from rich.console import Console
    from rich.markup import escape

    Console(stderr=True, highlight=False, soft_wrap=True).print(f"[bold red]error:[/] {escape(message)}")
    return typer.Exit(code)


def command(name: str) -> Callable:
    """Register a command: user errors become one red line and exit 2, failed runs and problems of
    the machine exit 1 (see :func:`aits.errors.classify`); warnings are one line each."""

    def decorate(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            from aits import locks
            from aits.errors import EnvironmentFault, RunFailed, UserError, classify
            from aits.training import distributed
            from aits.training.run import Interrupted

            try:
                with one_line_warnings():
                    return fn(*args, **kwargs)
            except (UserError, RunFailed, EnvironmentFault, Interrupted) as exc:
                if _debug["on"]:
                    raise
                rank = int(os.environ.get("RANK", "0")) if distributed.launched_by_torchrun() else 0
                if rank and isinstance(exc, (Interrupted, distributed.PeerFailed)):
                    raise typer.Exit(exc.exit_code if isinstance(exc, Interrupted) else 1) from None  # the first process says it
                if rank:
                    raise fail(f"process {rank}: {exc}", 2 if isinstance(exc, UserError) else 1) from None
                if isinstance(exc, Interrupted):
                    print(f"interrupted by signal {exc.signum}: checkpoint saved to {exc.saved}\n"
                          f"resume with: {_resume_command(name, exc, kwargs)}", file=sys.stderr)
                    raise typer.Exit(exc.exit_code) from None
                raise fail(str(exc), 2 if isinstance(exc, UserError) else 1) from None
            except KeyboardInterrupt:  # a second Ctrl-C, or one outside the training loop
                if _debug["on"]:
                    raise
                raise fail("interrupted (no checkpoint written by this interruption)", 130) from None
            except Exception as exc:  # a known cause (file system, memory, ...) is one line; a bug is not
                reported = classify(exc)
                if reported is None or _debug["on"]:
                    raise
                raise fail(*reported) from None
            finally:
                locks.release_all()
                distributed.shutdown()

        return app.command(name)(wrapper)

    return decorate


@contextlib.contextmanager
def one_line_warnings() -> Iterator[None]:
    """Show each warning as ``warning: <message>`` on stderr, without the source line that raised it."""
    def show(message: Warning | str, category: type[Warning], *args: Any, **kwargs: Any) -> None:
        print(f"warning: {message}", file=sys.stderr)

    previous = warnings.showwarning
    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = previous


def _resume_command(name: str, exc: Any, kwargs: dict) -> str:
    """The command line that continues an interrupted run from its checkpoint."""
    import shlex

    if name == "generalize":
        if exc.remaining <= 0:
            return f"nothing (every round finished; {exc.saved} holds the policy)"
        sets = "".join(f" --set {shlex.quote(s)}" for s in kwargs.get("set_") or [])
        return f"aits generalize {shlex.quote(str(exc.saved))} --data {shlex.quote(str(kwargs.get('data')))} " \
               f"--rounds {exc.remaining}{sets} --out {shlex.quote(str(exc.saved.parent.parent))}"
    from aits.training.distributed import relaunch

    return relaunch(f"{name} --resume {shlex.quote(str(exc.saved))}")


ConfigOpt = Annotated[Optional[Path], typer.Option("--config", "-c", help="YAML config (default: the embedded aits.yaml).")]
SetOpt = Annotated[Optional[list[str]], typer.Option("--set", "-s", help="Override a config key: section.key=value, the value read as YAML; a mapping value replaces the old one (repeatable).")]
DeviceOpt = Annotated[Optional[str], typer.Option("--device", help="cpu, cuda, cuda:N or auto (overrides the config).")]
SeedOpt = Annotated[Optional[int], typer.Option("--seed", help="Random seed (overrides the config).")]
EpochsOpt = Annotated[Optional[int], typer.Option("--epochs", help="Number of epochs (overrides training.epochs).")]
OutOpt = Annotated[Optional[Path], typer.Option("--out", "-o", help="Run directory (default: runs/<command>-<time>).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def overrides(sets: list[str] | None, **named: Any) -> list[str]:
    """``--set`` values followed by the typed options (which win), as override strings."""
    out = list(sets or [])
    keys = {"device": "device", "seed": "seed", "epochs": "training.epochs"}
    out += [f"{keys[k]}={v}" for k, v in named.items() if v is not None]
    return out
