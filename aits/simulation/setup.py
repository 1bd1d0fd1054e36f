"""From user input to a :class:`Setup` and policy specs: the system, its duration, the policies."""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml

from aits import registry
from aits.errors import UserError
from aits.physics import Gravity, Systems, kepler
from aits.systems import make_systems
from aits.runtime import resolve_device
from aits.simulation.problem import PolicySpec, Setup

KNOWN_PERIODS = {"figure_eight": 6.32591398}  # G = 1
LEARNED = "learned"


@dataclass(frozen=True)
class SystemInfo:
    """What was integrated, for reports."""

    generator: str
    params: dict[str, Any]
    bodies: int
    dims: int
    energy: float
    t_end: float
    period: float | None
    periods: float | None


def period_of(generator: str, s: Systems, gravity: Gravity) -> float | None:
    """The orbital period of a single system: a known choreography, or a bound two-body orbit
    (Kepler, from its semi-major axis); None when it has none."""
    if generator in KNOWN_PERIODS and gravity.G == 1.0:
        return KNOWN_PERIODS[generator]
    if s.bodies != 2:
        return None
    rel_pos, rel_vel = s.pos[:, 1] - s.pos[:, 0], s.vel[:, 1] - s.vel[:, 0]
    m_total = s.mass.sum(1)
    a, e = kepler.elements(rel_pos, rel_vel, m_total, gravity.G)
    a0 = float(a[0])
    if not (a0 > 0 and float(e[0]) < 1):
        return None
    return kepler.period(a0, float(m_total[0]), gravity.G)


def parse_value(text: str) -> Any:
    """A scalar from the command line: an int, a float (1e-4 too, which YAML reads as a string),
    else whatever YAML makes of it (booleans, strings)."""
    for number in (int, float):
        try:
            return number(text)
        except ValueError:
            pass
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def parse_assignments(items: list[str] | None, what: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"{what} must look like key=value, got {item!r}")
        out[key.strip()] = parse_value(value.strip())
    return out


def make_setup(generator: str, params: dict[str, Any] | None = None, *, integrator: str = "leapfrog",
               G: float = 1.0, softening: float = 0.0, time: float | None = None, periods: float | None = None,
               seed: int = 0, device: str = "cpu") -> tuple[Setup, SystemInfo]:
    """One system from a registered initial-condition generator, integrated for ``time`` (time
    units) or ``periods`` orbital periods (default 10 periods when the system has a period)."""
    plugins = registry.get_registry()
    if not (G > 0 and softening >= 0):
        raise UserError(f"need G > 0 and softening >= 0, got G={G}, softening={softening}")
    gravity = Gravity(G, softening)
    make = plugins.get("initial_conditions", generator)
    params = dict(params or {})
    if "count" in inspect.signature(make).parameters:
        if params.setdefault("count", 1) != 1:
            raise UserError("aits simulate integrates one system: drop count (or set count=1)")
    systems = make_systems(make, params, gravity, torch.Generator().manual_seed(seed), torch.float64,
                           resolve_device(device))
    if systems.batch != 1:
        raise UserError(f"aits simulate integrates one system, {generator} gave {systems.batch}")
    period = period_of(generator, systems, gravity)
    t_end = _duration(time, periods, period)
    integ = plugins.get("integrator", integrator)
    setup = Setup(systems, torch.full((1,), t_end, dtype=torch.float64, device=systems.pos.device), gravity, integ)
    info = SystemInfo(generator, {k: v for k, v in params.items() if k != "count"}, systems.bodies, systems.dims,
                      float(gravity.energy(systems)[0]), t_end, period, t_end / period if period else None)
    return setup, info


def _duration(time: float | None, periods: float | None, period: float | None) -> float:
    if time is not None and periods is not None:
        raise UserError("give either --time or --periods, not both")
    if time is not None:
        if not time > 0:
            raise UserError(f"--time must be > 0, got {time}")
        return float(time)
    if period is None:
        if periods is not None:
            raise UserError("--periods needs a system with an orbital period (a bound binary or figure_eight); "
                            "use --time")
        raise UserError("this system has no orbital period: give the duration with --time")
    periods = 10.0 if periods is None else periods
    if not periods > 0:
        raise UserError(f"--periods must be > 0, got {periods}")
    return periods * period


@dataclass(frozen=True)
class PolicyChoice:
    """A policy to run, at ``value`` (None: its default, or searched with --target-error)."""

    spec: PolicySpec
    value: float | None = None


def choose_policies(names: list[str] | None = None, options: list[str] | None = None,
                    checkpoint: Path | None = None) -> list[PolicyChoice]:
    """Policies from ``NAME`` or ``NAME=VALUE`` items (default: every registered baseline, plus
    ``learned`` when a checkpoint is given) and ``NAME.OPTION=VALUE`` options."""
    plugins = registry.get_registry()
    items = list(names or [])
    if not items:
        items = [n for n in plugins.names("policy") if n != LEARNED]
    if checkpoint is not None and not any(i.partition("=")[0].strip() == LEARNED for i in items):
        items.append(LEARNED)
    per_policy: dict[str, dict[str, Any]] = {}
    for key, value in parse_assignments(options, "--option").items():
        name, dot, option = key.partition(".")
        if not dot or not option:
            raise UserError(f"--option must look like policy.option=value, got {key}={value}")
        plugins.get("policy", name)
        per_policy.setdefault(name, {})[option] = value
    if checkpoint is not None:
        per_policy.setdefault(LEARNED, {})["checkpoint"] = str(checkpoint)
    choices, seen = [], set()
    for item in items:
        name, sep, text = item.partition("=")
        name = name.strip()
        if name in seen:
            raise UserError(f"policy {name} is given twice")
        seen.add(name)
        spec = PolicySpec(name, plugins.get("policy", name), per_policy.get(name, {}))
        spec.check_options()
        value = None
        if sep:
            value = parse_value(text)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise UserError(f"policy {name}: {spec.parameter} must be a number > 0, got {text!r}")
            value = float(value)
        choices.append(PolicyChoice(spec, value))
    for name in per_policy:
        if name not in seen:
            raise UserError(f"--option given for policy {name}, which is not selected")
    return choices
