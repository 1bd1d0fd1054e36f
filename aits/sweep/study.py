"""Run a sweep: an Optuna study (SQLite in the sweep directory by default, or any database URL),
one training run directory per trial, pruning from intermediate values, the best trial's config
written as ``best.yaml``."""

from __future__ import annotations

import shutil
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

from aits.config import load_config
from aits.errors import RunFailed, UserError
from aits.sweep import objectives
from aits.sweep.spec import SweepSpec
from aits.training.run import RunDir, new_run_dir, run_epochs, save_checkpoint, write_config
from aits.training.build import build_trainer
from aits.training.trainer import Trainer

HEARTBEAT_S = 60  # a trial whose process died is marked failed after this (and a grace period) without a beat


class SweepProgress(Protocol):
    def say(self, message: str) -> None: ...
    def trial_started(self, number: int, epochs: int) -> None: ...
    def epoch_finished(self, number: int, epoch: int) -> None: ...
    def trial_finished(self, trial: Any, best: Any | None) -> None: ...


@dataclass
class SweepResult:
    study: Any  # optuna.Study
    best: Any | None  # optuna.trial.FrozenTrial of the best complete trial
    best_config: Path | None
    best_checkpoint: Path | None


def import_optuna():
    try:
        import optuna
    except ImportError:
        raise UserError("aits sweep needs optuna: pip install 'aits[optuna]'") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def open_study(spec: SweepSpec, sweep_dir: Path, storage: str | None):
    """The study named in ``spec`` in ``storage`` (default: SQLite ``study.db`` in the sweep
    directory), created or loaded: re-running a sweep continues it."""
    optuna = import_optuna()
    url = storage or f"sqlite:///{(sweep_dir / 'study.db').resolve()}"
    try:
        with warnings.catch_warnings():  # the heartbeat is "experimental" in Optuna, and what resumes need
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            rdb = optuna.storages.RDBStorage(url, heartbeat_interval=HEARTBEAT_S, grace_period=2 * HEARTBEAT_S)
    except Exception as exc:  # a bad URL, a missing database driver, an unreachable server
        raise UserError(f"cannot open the study storage {url}: {type(exc).__name__}: {str(exc).splitlines()[0]}") from None
    pruner = (optuna.pruners.MedianPruner(spec.pruner.startup_trials, spec.pruner.warmup_epochs)
              if spec.pruner.kind == "median" else optuna.pruners.NopPruner())
    try:
        study = optuna.create_study(storage=rdb, study_name=spec.study, direction=spec.objective.direction,
                                    pruner=pruner, load_if_exists=True)
    except ValueError as exc:  # e.g. an existing study with the other direction
        raise UserError(f"study {spec.study} in {url}: {exc}") from None
    # a resumed study's sampler starts from a seed of its own, not from the first trials' again
    study.sampler = optuna.samplers.TPESampler(seed=spec.seed + len(study.trials))
    return study


class TrialRunner:
    """The objective Optuna calls: train one configuration into ``sweep_dir/trial-NNNN`` and judge it."""

    def __init__(self, spec: SweepSpec, sweep_dir: Path, baselines: dict[str, dict[str, int]] | None,
                 progress: SweepProgress) -> None:
        self.spec, self.sweep_dir, self.baselines, self.progress = spec, sweep_dir, baselines, progress
        self.optuna = import_optuna()

    def __call__(self, trial: Any) -> float:
        values = {param.key: param.suggest(trial) for param in self.spec.space}
        config = load_config(self.spec.config, self.spec.overrides(values))
        trainer = build_trainer(config)
        run = new_run_dir(self.sweep_dir / f"trial-{trial.number:04d}", "train")
        write_config(run, config)
        trial.set_user_attr("run_dir", str(run.path.resolve()))
        epochs = config.training.epochs
        self.progress.trial_started(trial.number, epochs)

        def on_epoch(metrics: dict) -> None:
            self.progress.epoch_finished(trial.number, metrics["epoch"])
            if metrics["epoch"] < epochs:
                value = self.intermediate(trainer, run, metrics)
                if value is not None:
                    trial.report(value, metrics["epoch"])
                    if trial.should_prune():
                        raise self.optuna.TrialPruned(f"pruned after epoch {metrics['epoch']} at {value:.4g}")

        try:
            run_epochs(trainer, run, epochs, on_epoch=on_epoch)
        finally:
            save_checkpoint(trainer, run.model)  # a pruned or failed trial's run directory is complete too
        return self.final(trainer, run, trial)

    def intermediate(self, trainer: Trainer, run: RunDir, metrics: dict) -> float | None:
        objective = self.spec.objective
        if objective.kind == "metric":
            return objectives.epoch_metric(objective, metrics)
        if objective.every and metrics["epoch"] % objective.every == 0:
            saved = save_checkpoint(trainer, run.epoch_checkpoint(metrics["epoch"]))
            return objectives.geometric_mean(list(objectives.step_ratios(objective, self.baselines, saved).values()))
        return None

    def final(self, trainer: Trainer, run: RunDir, trial: Any) -> float:
        objective = self.spec.objective
        if objective.kind == "metric":
            return objectives.epoch_metric(objective, trainer.metrics[-1])
        ratios = objectives.step_ratios(objective, self.baselines, run.model)
        trial.set_user_attr("step_ratios", ratios)
        return objectives.geometric_mean(list(ratios.values()))


def study_baselines(study: Any, spec: SweepSpec, progress: SweepProgress) -> dict[str, dict[str, int]] | None:
    """The classical rules' steps on the validation problems, measured once and kept in the study
    (so that resumed runs and other workers reuse them)."""
    objective = spec.objective
    if objective.kind != "step_ratio":
        return None
    key = f"baselines at {objective.target_error:g}"
    known = study.user_attrs.get(key, {})
    missing = {name: p for name, p in objective.problems.items() if name not in known}
    if missing:
        known = {**known, **objectives.baseline_steps(replace(objective, problems=missing), progress.say)}
        study.set_user_attr(key, known)
    return {name: known[name] for name in objective.problems}


def run_sweep(spec: SweepSpec, sweep_dir: Path, storage: str | None, progress: SweepProgress) -> SweepResult:
    """Run trials until the study holds ``spec.trials`` finished (complete or pruned) ones."""
    optuna = import_optuna()
    if storage is None:  # the default SQLite file lives in the sweep directory
        sweep_dir.mkdir(parents=True, exist_ok=True)
    study = open_study(spec, sweep_dir, storage)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    finished_states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    done = len(study.get_trials(deepcopy=False, states=finished_states))
    if done:
        progress.say(f"study {spec.study}: {done} of {spec.trials} trials already finished; continuing")
    runner = TrialRunner(spec, sweep_dir, study_baselines(study, spec, progress), progress)

    def finished(study: Any, trial: Any) -> None:
        progress.trial_finished(trial, _best(study))

    if spec.trials > done:
        study.optimize(runner, n_trials=spec.trials - done, catch=(RunFailed,),
                       callbacks=[optuna.study.MaxTrialsCallback(spec.trials, states=finished_states), finished])
    best = _best(study)
    best_config = best_checkpoint = None
    if best is not None:
        run = RunDir(Path(best.user_attrs["run_dir"]))
        if run.config.is_file():  # another worker's trial may live on another machine
            best_config = sweep_dir / "best.yaml"
            shutil.copyfile(run.config, best_config)
        best_checkpoint = run.model
    return SweepResult(study, best, best_config, best_checkpoint)


def _best(study: Any) -> Any | None:
    try:
        return study.best_trial
    except ValueError:  # no complete trial yet
        return None
