"""``aits plugins``: what is registered, and where it comes from."""

from __future__ import annotations

from aits import jsonio
from aits.cli.app import JsonOpt, command


@command("plugins")
def plugins_cli(as_json: JsonOpt = False) -> None:
    """List integrators, feature adapters, losses, initial conditions, dt policies and metric sinks, with their source."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from aits.registry import get_registry

    registry = get_registry()
    rows = [
        {"kind": e.kind, "name": e.name, "summary": e.summary, "source": e.source}
        for kind in registry.entries for e in sorted(registry.entries[kind].values(), key=lambda e: e.name)
    ]
    if as_json:
        print(jsonio.dumps({"plugins": rows, "broken": registry.broken}, indent=2))
        return
    table = Table(title="aits plugins")
    for column in ("kind", "name", "summary", "source"):
        table.add_column(column)
    for row in rows:
        table.add_row(*(escape(v) for v in row.values()))
    console = Console()
    console.print(table)
    for name, reason in registry.broken.items():
        console.print(f"[red]broken plugin {escape(name)}[/]: {escape(reason)}")
