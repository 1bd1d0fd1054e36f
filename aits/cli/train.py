"""``aits train``: the full two-phase training."""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from typing import Annotated, Optional

import typer

from aits.cli.app import ConfigOpt, DeviceOpt, EpochsOpt, OutOpt, SeedOpt, SetOpt, command, overrides

ResumeOpt = Annotated[Optional[Path], typer.Option("--resume", help="Continue from a checkpoint.")]


@command("train")
def train_cli(config: ConfigOpt = None, set_: SetOpt = None, device: DeviceOpt = None, seed: SeedOpt = None,
              epochs: EpochsOpt = None, out: OutOpt = None, resume: ResumeOpt = None) -> None:
    """Train a time-step policy: each epoch runs Part 1 (collect, energy gate) then Part 2 (generalize).

    Launched by torchrun (``torchrun --nproc_per_node=K -m aits train ...``), K processes train one
    policy data-parallel; the first one prints and writes."""
    from aits.cli.progress import make_reporter
    from aits.cli.training import start, stderr_console, summary_table
    from aits.training import distributed
    from aits.training import run as runs
    from aits.training.trainer import SilentReporter

    strategy = distributed.launched()
    console = stderr_console()
    reporter = make_reporter(console) if strategy.is_global_zero else SilentReporter()
    trainer, run = start(config, overrides(set_, device=device, seed=seed, epochs=epochs), resume, out, "train",
                         reporter, strategy)
    with reporter if strategy.is_global_zero else nullcontext():
        runs.run_epochs(trainer, run, trainer.config.training.epochs)
    runs.save_checkpoint(trainer, run.model)
    if strategy.is_global_zero:
        console.print(summary_table(trainer, run, "aits train"))
        console.print(f"policy saved to {run.model}")
