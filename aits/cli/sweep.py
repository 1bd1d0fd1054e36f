"""``aits sweep``: a hyperparameter study on Optuna; every trial is a normal training run directory."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from aits.cli.app import command

SweepDirOpt = Annotated[Optional[Path], typer.Option(
    "--out", "-o", help="Sweep directory (default: runs/sweep-<study>); the same one continues the study.")]
TrialsOpt = Annotated[Optional[int], typer.Option("--trials", min=1, help="Finished trials to reach (overrides the file).")]
StorageOpt = Annotated[Optional[str], typer.Option(
    "--storage", help="Optuna database URL shared by workers, e.g. postgresql://host/db "
    "(default: SQLite study.db in the sweep directory).")]
StudyOpt = Annotated[Optional[str], typer.Option("--study", help="Study name (overrides the file's).")]


@command("sweep")
def sweep_cli(space: Annotated[Path, typer.Argument(metavar="SWEEP.yaml", help="Search space, objective and trials.")],
              trials: TrialsOpt = None, out: SweepDirOpt = None, storage: StorageOpt = None,
              study: StudyOpt = None) -> None:
    """Search hyperparameters with Optuna: each trial trains a normal run directory, is judged by the
    objective (learned / best classical steps on validation problems, or a training metric) and may be
    pruned early; re-running the command continues the study."""
    from collections import Counter
    from dataclasses import replace

    from aits.cli.progress import PlainSweepProgress, RichSweepProgress, make_console, params_text
    from aits.errors import UserError
    from aits.sweep.spec import STUDY_NAME, load_spec
    from aits.sweep.study import import_optuna, run_sweep
    from aits.training.distributed import single_process_only
    from aits.training.run import Interrupted

    single_process_only("sweep")
    spec = load_spec(space)
    if study is not None and not STUDY_NAME.fullmatch(study):
        raise UserError(f"--study must be a name of letters, digits, '.', '_' and '-', got {study!r}")
    spec = replace(spec, trials=trials or spec.trials, study=study or spec.study)
    import_optuna()
    sweep_dir = out or Path("runs") / f"sweep-{spec.study}"
    console = make_console(stderr=True)
    progress = RichSweepProgress(console, spec.trials) if console.is_terminal else PlainSweepProgress(console)
    try:
        with progress:
            result = run_sweep(spec, sweep_dir, storage, progress)
    except Interrupted as exc:
        console.print(f"interrupted by signal {exc.signum}: the running trial stopped (checkpoint {exc.saved}); "
                      "re-run the same command to continue the study", markup=False)
        raise typer.Exit(exc.exit_code) from None
    counts = Counter(trial.state.name.lower() for trial in result.study.trials)
    console.print(f"study {spec.study}: " + ", ".join(f"{n} {state}" for state, n in sorted(counts.items())),
                  markup=False)
    if result.best is None:
        console.print("no trial has completed yet", markup=False)
        return
    best = result.best
    console.print(f"best: trial {best.number}, value {best.value:.4g} | {params_text(best)}", markup=False)
    console.print(f"best checkpoint: {result.best_checkpoint}", markup=False)
    if result.best_config is not None:
        console.print(f"best config: {result.best_config}  (train it again: aits train --config {result.best_config})",
                      markup=False)
