"""The sweep file: the search space over config keys, the objective, the number of trials.

    study: binaries                # study name (default: the file's stem)
    trials: 20                     # finished trials the study should reach; re-running continues it
    seed: 0                        # sampler seed
    config: ../aits.yaml           # base config, relative to this file (default: the embedded aits.yaml)
    set: [training.epochs=30]      # fixed overrides on the base
    objective:
      kind: step_ratio             # step_ratio (minimise) | metric
      target_error: 1.0e-4         # step_ratio: learned / best classical steps at this max |dE/E0|
      every: 0                     # step_ratio: also measure every N epochs, for pruning (0: at the end only)
      problems: {...}              # step_ratio: validation problems (default: DEFAULT_PROBLEMS)
      # metric: part2.pass_rate    # metric: a key of the last epoch's metrics ...
      # direction: maximize        # ... and whether to minimize or maximize it
    pruner: median                 # median | none | {kind: median, startup_trials: 5, warmup_epochs: 0}:
                                   # stop a trial whose intermediate value is worse than the median of
                                   # the earlier trials' at the same epoch (after startup_trials trials)
    space:
      training.learning_rate: {low: 3.0e-4, high: 1.0e-2, log: true}
      training.steps_per_epoch: {low: 2, high: 8}           # ints: an integer range
      model.activation: {choices: [tanh, silu]}
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from aits.config import load_config, read_yaml
from aits.errors import UserError

TOP_KEYS = {"study", "trials", "seed", "config", "set", "objective", "pruner", "space"}
OBJECTIVE_KEYS = {"kind", "target_error", "every", "problems", "metric", "direction"}
PROBLEM_KEYS = {"system", "params", "seed", "periods", "time", "skip"}
PARAM_KEYS = {"low", "high", "log", "step", "choices"}
PRUNERS = ("median", "none")
STUDY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
PRUNER_KEYS = {"kind", "startup_trials", "warmup_epochs"}
DEFAULT_PROBLEMS = {  # small and quick: two binaries, 3 orbits each (fixed dt is never best on e = 0.9)
    "kepler_e0.5": {"system": "kepler_binary", "params": {"e": 0.5}, "periods": 3},
    "kepler_e0.9": {"system": "kepler_binary", "params": {"e": 0.9}, "periods": 3, "skip": ["fixed"]},
}


@dataclass(frozen=True)
class Param:
    """One searched config key: a float or int range (``log``: log-uniform) or a list of choices."""

    key: str
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    choices: tuple[Any, ...] | None = None

    def suggest(self, trial: Any) -> Any:
        """The trial's value (choices that are not plain scalars travel through Optuna as JSON)."""
        if self.choices is not None:
            picked = trial.suggest_categorical(self.key, [_scalar(c) for c in self.choices])
            return self.choices[[_scalar(c) for c in self.choices].index(picked)]
        if isinstance(self.low, int) and isinstance(self.high, int) and not isinstance(self.step, float):
            return trial.suggest_int(self.key, self.low, self.high, step=self.step or 1, log=self.log)
        return trial.suggest_float(self.key, self.low, self.high, step=self.step, log=self.log)

    def extremes(self) -> list[Any]:
        return list(self.choices) if self.choices is not None else [self.low, self.high]


@dataclass(frozen=True)
class Objective:
    kind: str = "step_ratio"
    target_error: float = 1e-4
    every: int = 0
    problems: dict[str, dict[str, Any]] = field(default_factory=lambda: dict(DEFAULT_PROBLEMS))
    metric: str | None = None
    direction: str = "minimize"


@dataclass(frozen=True)
class Pruner:
    kind: str = "median"
    startup_trials: int = 5
    warmup_epochs: int = 0


@dataclass(frozen=True)
class SweepSpec:
    study: str
    trials: int
    seed: int
    config: Path | None
    sets: list[str]
    objective: Objective
    pruner: Pruner
    space: list[Param]

    def overrides(self, values: dict[str, Any]) -> list[str]:
        """``--set`` strings: the fixed overrides, then the trial's values (YAML that reads back as they are)."""
        return self.sets + [f"{key}={_yaml(value)}" for key, value in values.items()]


def _scalar(choice: Any) -> Any:
    return choice if choice is None or isinstance(choice, (bool, int, float, str)) else json.dumps(choice)


def _yaml(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True, width=math.inf).removesuffix("\n...\n").strip()


def _fail(path: Path, message: str) -> UserError:
    return UserError(f"{path}: {message}")


def _unknown(path: Path, where: str, data: dict, allowed: set[str]) -> None:
    unknown = sorted(str(k) for k in set(data) - allowed)
    if unknown:
        raise _fail(path, f"unknown key(s) {', '.join(unknown)} in {where} (allowed: {', '.join(sorted(allowed))})")


def _number(path: Path, key: str, value: Any) -> float | int:
    if isinstance(value, str):  # YAML reads 1e-4 (no dot) as a string
        try:
            value = float(value)
        except ValueError:
            pass
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _fail(path, f"space.{key}: bounds must be finite numbers, got {value!r}")
    return value


def _param(path: Path, key: str, data: Any) -> Param:
    if not isinstance(data, dict):
        raise _fail(path, f"space.{key} must be a mapping with low/high (and log, step) or choices")
    _unknown(path, f"space.{key}", data, PARAM_KEYS)
    if "choices" in data:
        choices = data["choices"]
        if not isinstance(choices, list) or not choices or set(data) != {"choices"}:
            raise _fail(path, f"space.{key}: choices must be a non-empty list, alone")
        return Param(key, choices=tuple(choices))
    if "low" not in data or "high" not in data:
        raise _fail(path, f"space.{key} needs low and high (or choices)")
    low, high = _number(path, key, data["low"]), _number(path, key, data["high"])
    step = None if data.get("step") is None else _number(path, key, data["step"])
    log = data.get("log", False)
    if not isinstance(log, bool):
        raise _fail(path, f"space.{key}: log must be true or false")
    if not low < high or (log and low <= 0) or (log and step is not None) or (step is not None and step <= 0):
        raise _fail(path, f"space.{key}: need low < high (low > 0 with log; log and step not together; step > 0)")
    return Param(key, low, high, log, step)


def _objective(path: Path, data: Any) -> Objective:
    if data is None:
        return Objective()
    if not isinstance(data, dict):
        raise _fail(path, "objective must be a mapping")
    _unknown(path, "objective", data, OBJECTIVE_KEYS)
    kind = data.get("kind", "step_ratio")
    if kind == "metric":
        metric, direction = data.get("metric"), data.get("direction")
        if not isinstance(metric, str) or direction not in ("minimize", "maximize"):
            raise _fail(path, "objective kind metric needs metric (e.g. part2.pass_rate) and direction "
                              "(minimize or maximize)")
        return Objective(kind, metric=metric, direction=direction)
    if kind != "step_ratio":
        raise _fail(path, f"objective.kind must be step_ratio or metric, got {kind!r}")
    target = _number(path, "objective.target_error", data.get("target_error", 1e-4))
    every = data.get("every", 0)
    if not target > 0 or isinstance(every, bool) or not isinstance(every, int) or every < 0:
        raise _fail(path, "objective: target_error must be > 0 and every an integer >= 0")
    problems = data.get("problems", DEFAULT_PROBLEMS)
    if not isinstance(problems, dict) or not problems:
        raise _fail(path, "objective.problems must be a non-empty mapping of name: problem")
    for name, problem in problems.items():
        if not isinstance(problem, dict) or "system" not in problem:
            raise _fail(path, f"objective.problems.{name} needs system (an initial-condition generator)")
        _unknown(path, f"objective.problems.{name}", problem, PROBLEM_KEYS)
    return Objective(kind, float(target), every, dict(problems))


def _pruner(path: Path, data: Any) -> Pruner:
    data = {"kind": data} if isinstance(data, str) else data
    if not isinstance(data, dict):
        raise _fail(path, "pruner must be median, none or a mapping with kind, startup_trials, warmup_epochs")
    _unknown(path, "pruner", data, PRUNER_KEYS)
    pruner = Pruner(**data)
    counts = (pruner.startup_trials, pruner.warmup_epochs)
    if pruner.kind not in PRUNERS or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in counts):
        raise _fail(path, f"pruner: kind must be one of {', '.join(PRUNERS)}, startup_trials and warmup_epochs "
                          "integers >= 0")
    return pruner


def load_spec(path: Path) -> SweepSpec:
    """The sweep file at ``path``, checked; every searched key is tried at its bounds and choices
    against the base config, so that a bad key fails here and not in trial 17."""
    data = read_yaml(path)
    _unknown(path, "the sweep file", data, TOP_KEYS)
    space = data.get("space")
    if not isinstance(space, dict) or not space:
        raise _fail(path, "space must be a non-empty mapping of config key: range or choices")
    params = [_param(path, str(key), value) for key, value in space.items()]
    trials, seed = data.get("trials", 20), data.get("seed", 0)
    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
        raise _fail(path, f"trials must be an integer >= 1, got {trials!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise _fail(path, f"seed must be an integer >= 0, got {seed!r}")
    sets = data.get("set", [])
    if not isinstance(sets, list) or not all(isinstance(s, str) for s in sets):
        raise _fail(path, "set must be a list of section.key=value strings")
    pruner = _pruner(path, data.get("pruner", "median"))
    config, study = data.get("config"), str(data.get("study", path.stem))
    if not STUDY_NAME.fullmatch(study):
        raise _fail(path, f"study must be a name of letters, digits, '.', '_' and '-' (it names the sweep "
                          f"directory), got {study!r}")
    spec = SweepSpec(study, trials, seed,
                     None if config is None else (path.parent / str(config)), sets, _objective(path, data.get("objective")),
                     pruner, params)
    for param in params:
        for value in param.extremes():
            try:
                load_config(spec.config, spec.overrides({param.key: value}))
            except UserError as exc:
                raise _fail(path, f"space.{param.key} = {value!r}: {exc}") from None
    return spec
