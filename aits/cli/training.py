"""Shared plumbing of ``train``, ``collect`` and ``generalize``: set up, run, summarise."""

from __future__ import annotations

import math
from pathlib import Path

from rich.console import Console
from rich.table import Table

from aits import sinks
from aits.cli.progress import make_console
from aits.config import load_config
from aits.training import run as runs
from aits.training.build import build_trainer
from aits.training.state import trainer_from_checkpoint
from aits.training.strategy import SingleProcess, Strategy
from aits.training.trainer import Trainer


def stderr_console() -> Console:
    return make_console(stderr=True)


def start(config: Path | None, sets: list[str], resume: Path | None, out: Path | None, command: str,
          reporter, strategy: Strategy | None = None) -> tuple[Trainer, runs.RunDir]:
    """A trainer (fresh, or rebuilt from ``resume``) and its run directory, config written (by the
    first process of ``strategy``; the others learn the directory's path)."""
    strategy = strategy or SingleProcess()
    if resume is not None:
        if config is not None:
            from aits.errors import UserError

            raise UserError("--resume takes its config from the checkpoint; drop --config (use --set to change keys)")
        trainer = trainer_from_checkpoint(resume, sets, reporter, strategy)
    else:
        trainer = build_trainer(load_config(config, sets), reporter, strategy)  # builds everything (and validates plugin names)
    sinks.resolve(trainer.config.logging.sinks)  # before any file is written
    path = str(_run_dir(trainer, resume, out, command).path) if strategy.is_global_zero else None
    return trainer, runs.RunDir(Path(strategy.broadcast_object(path)))


def _run_dir(trainer: Trainer, resume: Path | None, out: Path | None, command: str) -> runs.RunDir:
    """The run directory: the checkpoint's own when resuming into it, else a new one; config written."""
    if resume is not None:
        own = runs.run_of(resume) or resume.parent
        if out is None or out.resolve() == own.resolve():
            run = runs.continue_run(own, trainer.epoch)  # the checkpoint's own run
        else:
            run = runs.new_run_dir(out, command)  # another run's directory is never overwritten
            runs.write_metrics(run, trainer.metrics)
    else:
        run = runs.new_run_dir(out, command)
    runs.write_config(run, trainer.config)
    if trainer.config.compile and trainer.strategy.world_size > 1:
        stderr_console().print("[dim]compile: not with several processes yet; every process trains eagerly[/]")
    elif trainer.config.compile:
        stderr_console().print("[dim]compile: the first Part 1 and Part 2 iterations build their graphs "
                               "(seconds to a minute)[/]")
    return run


def summary_table(trainer: Trainer, run: runs.RunDir, title: str) -> Table:
    """The end-of-run table: what was trained and how well the last epoch did."""
    table = Table(title=title, show_header=False)
    total = sinks.summary(trainer)
    rows = [("epochs", str(total["epochs"])), ("run directory", str(run.path))]
    if "part1_accepted" in total:
        rows += [("part 1 accepted / rejected", f"{total['part1_accepted']} / {total['part1_rejected']}"),
                 ("part 1 retrain iterations", str(total["part1_retrain_iters"]))]
    if "part2_epochs" in total:
        rows += [("part 2 converged epochs", f"{total['part2_converged_epochs']} / {total['part2_epochs']}"),
                 ("part 2 final pass rate", _fmt_pct(total["part2_final_pass_rate"])),
                 ("median dt / time scale (T)", f"{total['dt_over_tau_median']:.4g}")]
    rows += [("replay buffer", str(total["buffer_size"])), ("force evaluations", str(total["force_evaluations"])),
             ("wall time (s)", f"{total['wall_time_s']:.1f}")]
    for key, value in rows:
        table.add_row(key, value)
    return table


def _fmt_pct(x: float) -> str:
    return "-" if math.isnan(x) else f"{100 * x:.1f}%"
