"""Built-in dt policies for simulation (filled in by the evaluation work)."""

from aits.hookspecs import hookimpl


@hookimpl
def aits_register_policies(register) -> None:
    pass
