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
    table = Table(title="aits plugins")  # one section per kind, so that the summary keeps the width
    table.add_column("name", no_wrap=True)
    table.add_column("summary", ratio=1)
    table.add_column("source", max_width=14)
    for kind in registry.entries:
        table.add_row(f"[bold]{escape(kind)}[/]", end_section=False)
        for row in (r for r in rows if r["kind"] == kind):
            table.add_row(*(escape(row[key]) for key in ("name", "summary", "source")))
        table.add_section()
    console = Console()
    console.print(table)
    for name, reason in registry.broken.items():
        console.print(f"[red]broken plugin {escape(name)}[/]: {escape(reason)}")
