"""Run every chosen policy on one setup (at a given setting, or at equal accuracy with
``target_error``) and compare the learned policy's steps with the best baseline's."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from collections.abc import Sequence
from typing import Any, Callable

import torch

from aits.interfaces import Reference, ReferenceResult
from aits.simulation.engine import DEFAULT_MAX_STEPS, integrate
from aits.simulation.problem import PolicySpec, Setup
from aits.simulation.results import RowResult
from aits.simulation.search import SearchFailed, search
from aits.simulation.setup import LEARNED, PolicyChoice, SystemInfo

TIMING_STEPS = 2000  # a searched setting's wall time is measured on this many solo steps, then scaled


@dataclass
class Entry:
    """One line of the report: a policy at one setting (``result`` None when the search failed)."""

    label: str
    spec: PolicySpec
    result: RowResult | None
    wall_time_s: float | None = None
    wall_time_estimated: bool = False
    step_cost_s: float | None = None  # wall time of one step (compilation excluded)
    search: dict[str, Any] | None = None
    trace: dict[str, torch.Tensor] | None = None
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        r = self.result
        out: dict[str, Any] = {"label": self.label, "policy": self.spec.name, "parameter": self.spec.parameter}
        out.update({
            "value": r.value if r else None, "status": r.status if r else "failed",
            "steps": r.steps if r else None, "force_evaluations": r.force_evaluations if r else None,
            "max_rel_energy_error": r.max_error if r else None, "final_rel_energy_error": r.final_error if r else None,
            "momentum_drift": r.momentum_drift if r else None,
            "angular_momentum_drift": r.angular_momentum_drift if r else None,
            "end_time": r.end_time if r else None,
            "wall_time_s": self.wall_time_s, "wall_time_estimated": self.wall_time_estimated,
            "step_cost_s": self.step_cost_s,
            "search": self.search, "error": self.error,
        })
        return finite_json(out)


@dataclass
class ReferenceEntry:
    """An outside integrator's run on the same system (``aits simulate --reference``)."""

    label: str
    result: ReferenceResult

    def to_json(self) -> dict[str, Any]:
        r = self.result
        return finite_json({"label": self.label, "setting": r.setting, "steps": r.steps,
                            "force_evaluations": r.force_evaluations, "max_rel_energy_error": r.max_error,
                            "final_rel_energy_error": r.final_error, "end_time": r.end_time,
                            "wall_time_s": r.wall_time_s})


@dataclass
class Report:
    system: SystemInfo
    integrator: str
    target_error: float | None
    entries: list[Entry]
    references: list[ReferenceEntry] = field(default_factory=list)

    def comparison(self) -> dict[str, Any] | None:
        """At equal accuracy: the searched learned policy's steps (and force evaluations) over the
        cheapest baseline's. None without a target error or without a learned policy."""
        learned = next((e for e in self.entries if e.label == LEARNED and e.result), None)
        baselines = [e for e in self.entries if e.spec.name != LEARNED and e.result]
        if self.target_error is None or learned is None or not baselines:
            return None
        by_steps = min(baselines, key=lambda e: e.result.steps)
        by_evals = min(baselines, key=lambda e: e.result.force_evaluations)
        timed = [e for e in baselines if e.wall_time_s]
        by_wall = min(timed, key=lambda e: e.wall_time_s) if timed and learned.wall_time_s else None
        return {
            "learned_steps": learned.result.steps, "best_baseline": by_steps.label,
            "best_baseline_steps": by_steps.result.steps, "step_ratio": learned.result.steps / by_steps.result.steps,
            "learned_force_evaluations": learned.result.force_evaluations,
            "best_baseline_by_force_evaluations": by_evals.label,
            "force_evaluation_ratio": learned.result.force_evaluations / by_evals.result.force_evaluations,
            "best_baseline_by_wall_time": by_wall.label if by_wall else None,
            "wall_time_ratio": learned.wall_time_s / by_wall.wall_time_s if by_wall else None,
        }

    def to_json(self) -> dict[str, Any]:
        return finite_json({
            "system": asdict(self.system), "integrator": self.integrator, "target_error": self.target_error,
            "policies": [e.to_json() for e in self.entries], "comparison": self.comparison(),
            **({"references": [r.to_json() for r in self.references]} if self.references else {}),
        })


def finite_json(x: Any) -> Any:
    """``x`` with NaN and infinities replaced by None, so that it is valid JSON."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: finite_json(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [finite_json(v) for v in x]
    return x


def run_at(setup: Setup, spec: PolicySpec, value: float, max_steps: int, label: str | None = None,
           compiled: bool | None = None) -> Entry:
    """One solo run at ``value``, with its trace and measured wall time."""
    out = integrate(setup, spec, torch.tensor([value], dtype=torch.float64), max_steps=max_steps, record=True,
                    compiled=compiled)
    cost = (out.wall_time_s - out.compile_time_s) / max(out.rows[0].steps, 1)
    return Entry(label or spec.name, spec, out.rows[0], out.wall_time_s, step_cost_s=cost, trace=out.trace.row(0))


def run_searched(setup: Setup, spec: PolicySpec, target: float, guess: float | None, max_steps: int,
                 order: int, compiled: bool | None = None, grid: int = 48,
                 timing_compiled: bool | None = None) -> Entry:
    """The cheapest setting that meets ``target`` (``grid`` candidates per factor 2); its solo wall
    time is measured on up to ``TIMING_STEPS`` steps and scaled to its step count (compilation
    counted once), compiled as ``timing_compiled`` says (default: as ``compiled``)."""
    try:
        found = search(setup, spec, target, order=order, guess=guess, max_steps=max_steps, grid=grid,
                       compiled=compiled)
    except SearchFailed as exc:
        return Entry(spec.name, spec, None, error=str(exc))
    best = found.best
    timing = integrate(setup, spec, torch.tensor([best.value], dtype=torch.float64),
                       max_steps=min(best.steps, TIMING_STEPS),
                       compiled=compiled if timing_compiled is None else timing_compiled)
    failing = found.failing
    info = {
        "estimate": found.estimate, "rounds": found.rounds, "candidates": found.candidates,
        "wall_time_s": found.wall_time_s,
        "cheaper_failing": None if failing is None else
        {"value": failing.value, "steps": failing.steps, "max_rel_energy_error": failing.max_error},
    }
    cost = timing.iteration_cost_s
    return Entry(spec.name, spec, best, timing.compile_time_s + cost * best.steps, best.steps > TIMING_STEPS, cost,
                 info, found.trace)


def compare(setup: Setup, info: SystemInfo, choices: list[PolicyChoice], *, target_error: float | None = None,
            max_steps: int = DEFAULT_MAX_STEPS, progress: Callable[[str], None] | None = None,
            compiled: bool | None = None, references: Sequence[Reference] = ()) -> Report:
    """Every choice at its value (or default); with ``target_error``, each searched for equal
    accuracy (a given value is the search's first guess) and the learned policy also unscaled.
    ``compiled``: see :func:`~aits.simulation.engine.integrate` (None: long runs only).
    ``references``: outside integrators run once each on the same system, at their own setting."""
    say = progress or (lambda message: None)
    order = setup.integrator.order
    for choice in choices:  # construction errors (a missing checkpoint, bad options) before any work
        choice.spec.build(torch.tensor([choice.value or choice.spec.default], dtype=torch.float64), setup)
    entries = []
    for choice in choices:
        spec = choice.spec
        if target_error is None:
            say(f"{spec.name}: integrating")
            entries.append(run_at(setup, spec, choice.value or spec.default, max_steps, compiled=compiled))
            continue
        say(f"{spec.name}: searching {spec.parameter} for max |dE/E0| <= {target_error:g}")
        entries.append(run_searched(setup, spec, target_error, choice.value, max_steps, order, compiled))
        if spec.name == LEARNED:
            say(f"{spec.name}: integrating unscaled")
            entries.append(run_at(setup, spec, 1.0, max_steps, label=f"{LEARNED} (unscaled)", compiled=compiled))
    ran = []
    for reference in references:
        say(f"{reference.name}: integrating (reference)")
        ran.append(ReferenceEntry(reference.name, reference.run(setup.systems, float(setup.t_end[0]), setup.gravity)))
    return Report(info, setup.integrator.name, target_error, entries, ran)
