"""What a trial is judged by: the learned / best classical step ratio on validation problems at a
target error (the classical rules measured once per study), or a metric of the last epoch."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable

from aits.errors import RunFailed, UserError
from aits.inspection import metric
from aits.simulation.search import SearchFailed, search
from aits.simulation.setup import LEARNED, choose_policies, make_setup
from aits.sinks import scalars
from aits.sweep.spec import Objective

MAX_STEPS = 2_000_000  # per validation run: a trial's policy that needs more has failed


def _setup(problem: dict[str, Any]):
    return make_setup(problem["system"], problem.get("params"), seed=problem.get("seed", 0),
                      periods=problem.get("periods"), time=problem.get("time"))[0]


def _steps(problem: dict[str, Any], policy: str, target: float, checkpoint: Path | None = None) -> int:
    """The fewest steps of ``policy`` with max |dE/E0| <= ``target`` on ``problem``."""
    setup = _setup(problem)
    (choice,) = choose_policies([policy], None, checkpoint)
    return search(setup, choice.spec, target, order=setup.integrator.order, max_steps=MAX_STEPS).best.steps


def baseline_steps(objective: Objective, say: Callable[[str], None]) -> dict[str, dict[str, int]]:
    """Each validation problem's classical rules at the target: ``{problem: {policy: steps}}``
    (a rule whose search fails is left out)."""
    out: dict[str, dict[str, int]] = {}
    for name, problem in objective.problems.items():
        out[name] = {}
        for choice in choose_policies(None, None, None):
            policy = choice.spec.name
            if policy in problem.get("skip", []):
                continue
            say(f"baseline {policy} on {name} at max |dE/E0| <= {objective.target_error:g}")
            try:
                out[name][policy] = _steps(problem, policy, objective.target_error)
            except SearchFailed:
                continue
        if not out[name]:
            raise RunFailed(f"validation problem {name}: no classical rule reaches {objective.target_error:g}")
    return out


def step_ratios(objective: Objective, baselines: dict[str, dict[str, int]], checkpoint: Path) -> dict[str, float]:
    """Learned steps over the best classical rule's, per validation problem."""
    ratios = {}
    for name, problem in objective.problems.items():
        try:
            learned = _steps(problem, LEARNED, objective.target_error, checkpoint)
        except SearchFailed as exc:
            raise RunFailed(f"validation problem {name}: {exc}") from None
        ratios[name] = learned / min(baselines[name].values())
    return ratios


def geometric_mean(values: list[float]) -> float:
    return math.exp(sum(math.log(v) for v in values) / len(values))


def epoch_metric(objective: Objective, metrics: dict[str, Any]) -> float:
    """The objective's metric in one epoch's metrics (a user error when the epoch has no such number)."""
    value = metric(metrics, tuple(str(objective.metric).split(".")))
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        keys = ", ".join(k.replace("/", ".") for k in scalars(metrics))
        raise UserError(f"objective metric {objective.metric} is not a number of the epoch metrics (have: {keys})")
    return float(value)
