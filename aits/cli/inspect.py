"""``aits inspect``: what a checkpoint, data set or run directory holds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from aits.cli.app import JsonOpt, command


@command("inspect")
def inspect_cli(path: Annotated[Path, typer.Argument(metavar="PATH", help="A checkpoint, data set or run directory.")],
                as_json: JsonOpt = False) -> None:
    """Show the resolved config, epoch, metrics summary, model size and plugins of PATH."""
    from rich.console import Console
    from rich.table import Table

    from aits.errors import UserError
    from aits.inspection import describe

    if not path.exists():
        raise UserError(f"path not found: {path}")
    summary = describe(path)
    if as_json:
        print(json.dumps(summary, indent=2, default=str))
        return
    table = Table(title=f"{summary['kind']}: {path}", show_header=False)
    for key, value in summary.items():
        if key in ("config", "kind"):
            continue
        table.add_row(key, json.dumps(value, default=str) if isinstance(value, (dict, list)) else str(value))
    console = Console()
    console.print(table)
    import yaml

    console.print("[bold]config[/]\n" + yaml.safe_dump(summary["config"], sort_keys=False), highlight=False)
