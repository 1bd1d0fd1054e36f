"""``aits generalize``: Part 2 only, on a saved data set and checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from aits.cli.app import OutOpt, SetOpt, command


@command("generalize")
def generalize_cli(
    checkpoint: Annotated[Path, typer.Argument(metavar="CHECKPOINT", help="Checkpoint with the policy to train (e.g. model.pt of a collect run).")],
    data: Annotated[Path, typer.Option("--data", "-d", help="Data set written by `aits collect`.")],
    rounds: Annotated[int, typer.Option("--rounds", min=1, help="Part 2 passes (each up to training.max_generalize_iters).")] = 1,
    set_: SetOpt = None,
    out: OutOpt = None,
) -> None:
    """Run Part 2 (random minibatches of the data set, one batched step each) and save the policy.
    With ``--out`` the run directory of CHECKPOINT (one of its checkpoints/), the run goes on there."""
    from aits.cli.progress import make_reporter
    from aits.cli.training import stderr_console, summary_table
    from aits import sinks
    from aits.training import run as runs
    from aits.training.state import trainer_from_checkpoint

    from aits.training.distributed import single_process_only

    single_process_only("generalize")
    console = stderr_console()
    reporter = make_reporter(console)
    trainer = trainer_from_checkpoint(checkpoint, set_, reporter)
    runs.load_dataset_into(trainer, data)
    sinks.resolve(trainer.config.logging.sinks)  # before any file is written
    own = runs.run_of(checkpoint)
    if out is not None and own is not None and out.resolve() == own.resolve():
        run = runs.continue_run(own, trainer.epoch)  # resuming: the rounds go on in the same run
    else:
        run = runs.new_run_dir(out, "generalize")
    runs.write_config(run, trainer.config)
    with reporter:
        runs.run_epochs(trainer, run, trainer.epoch + rounds, part1=False)
    runs.save_checkpoint(trainer, run.model)
    console.print(summary_table(trainer, run, "aits generalize"))
    console.print(f"policy saved to {run.model}")
