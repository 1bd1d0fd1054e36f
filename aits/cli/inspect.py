"""``aits inspect``: what a checkpoint, data set or run directory holds."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from aits import jsonio
from aits.cli.app import JsonOpt, command

LastOpt = Annotated[int, typer.Option("--last", min=0, help="Epochs shown in the epoch table (0: all).")]
PlotOpt = Annotated[Optional[Path], typer.Option("--plot", help="Write training curves per epoch (PNG).")]


@command("inspect")
def inspect_cli(path: Annotated[Path, typer.Argument(metavar="PATH", help="A checkpoint, data set or run directory.")],
                as_json: JsonOpt = False, last: LastOpt = 10, plot: PlotOpt = None) -> None:
    """Show the resolved config, epoch, metrics per epoch, model size and plugins of PATH."""
    import yaml
    from rich.table import Table

    from aits.cli.progress import make_console
    from aits.errors import UserError
    from aits.inspection import epoch_table, inspect

    if not path.exists():
        raise UserError(f"path not found: {path}")
    summary, metrics = inspect(path)
    if plot is not None:
        from aits.plotting import plot_training

        written = plot_training(metrics, plot, f"{summary['kind']}: {path}")
        make_console(stderr=True).print(f"plot written to {written}")
    if as_json:
        print(jsonio.dumps(summary, indent=2, default=str))
        return
    table = Table(title=f"{summary['kind']}: {path}", show_header=False)
    for key, value in summary.items():
        if key not in ("config", "kind", "last_epoch"):
            table.add_row(key, _cell(value))
    console = make_console(stderr=False)
    console.print(table)
    if metrics:
        shown = metrics[-last:] if last else metrics
        headings, rows = epoch_table(shown)
        epochs = Table(title=f"last {len(shown)} of {len(metrics)} epochs" if len(shown) < len(metrics)
                       else f"{len(metrics)} epochs")
        for heading in headings:
            epochs.add_column(heading, justify="right")
        for row in rows:
            epochs.add_row(*row)
        console.print(epochs)
    console.print("[bold]config[/]\n" + yaml.safe_dump(summary["config"], sort_keys=False), highlight=False)


def _cell(value: Any, prefix: str = "") -> str:
    """A summary value as text: a mapping as one ``key: value`` line per item (nested keys dotted)."""
    if isinstance(value, dict):
        return "\n".join(_cell(v, f"{prefix}{k}.") if isinstance(v, dict) else f"{prefix}{k}: {_cell(v)}"
                         for k, v in value.items())
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) if value else "-"
    return str(value)
