"""``aits collect``: Part 1 only; writes the accepted data set and a checkpoint."""

from __future__ import annotations

from aits.cli.app import ConfigOpt, DeviceOpt, EpochsOpt, OutOpt, SeedOpt, SetOpt, command, overrides
from aits.cli.train import ResumeOpt


@command("collect")
def collect_cli(config: ConfigOpt = None, set_: SetOpt = None, device: DeviceOpt = None, seed: SeedOpt = None,
                epochs: EpochsOpt = None, out: OutOpt = None, resume: ResumeOpt = None) -> None:
    """Run Part 1 (predict dt, energy gate, retrain on rejection) for training.epochs epochs and save the
    accepted steps as a data set (dataset.pt) with a checkpoint (model.pt)."""
    from aits.cli.progress import make_reporter
    from aits.cli.training import start, stderr_console, summary_table
    from aits.training import run as runs
    from aits.training.distributed import single_process_only

    single_process_only("collect")
    console = stderr_console()
    reporter = make_reporter(console)
    trainer, run = start(config, overrides(set_, device=device, seed=seed, epochs=epochs), resume, out, "collect", reporter)
    with reporter:
        runs.run_epochs(trainer, run, trainer.config.training.epochs, part2=False)
    runs.save_dataset(trainer, run.dataset)
    runs.save_checkpoint(trainer, run.model)
    console.print(summary_table(trainer, run, "aits collect"))
    console.print(f"data set ({sum(p.buffer.size for p in trainer.populations)} samples) saved to {run.dataset}; checkpoint saved to {run.model}")
