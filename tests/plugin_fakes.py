"""One fake plugin object of every kind, each a small working implementation of its interface, and
plugin modules that register them through the hooks (the current one and the deprecated ones)."""

from __future__ import annotations

import math
import types

import torch

from aits.hookspecs import hookimpl
from aits.interfaces import DtPolicy, FeatureAdapter, Integrator, Loss, MetricSink, Reference, ReferenceResult
from aits.physics import Gravity, Systems


class SymplecticEuler(Integrator):
    """Symplectic Euler (kick, then drift): 1st order."""

    name = "symplectic_euler"
    order = 1
    force_evaluations = 1

    def step(self, s: Systems, dt: torch.Tensor, gravity: Gravity) -> Systems:
        h = dt[:, None, None]
        vel = s.vel + h * s.acc
        pos = s.pos + h * vel
        return Systems(pos, vel, s.mass, gravity.accelerations(pos, s.mass), s.time + dt)


class Separation(FeatureAdapter):
    """The log of the separation of the first two bodies."""

    name = "separation"
    dim = 1

    def features(self, s: Systems, history: torch.Tensor) -> torch.Tensor:
        return (s.pos[:, 1] - s.pos[:, 0]).norm(dim=-1, keepdim=True).log()


class Overshoot(Loss):
    """(log10 of the error over E_upper) squared."""

    name = "overshoot"

    def __call__(self, rel_dE: torch.Tensor, config) -> torch.Tensor:
        return torch.log10(rel_dE.clamp_min(1e-300) / config.E_upper) ** 2


def circular_pair(*, G: float, rng: torch.Generator, count: int = 1) -> tuple[torch.Tensor, ...]:
    """Two unit masses on a circular orbit of separation 1."""
    v = 0.5 * math.sqrt(2 * G)  # each body's speed: relative speed sqrt(G M / r)
    pos = torch.tensor([[-0.5, 0.0, 0.0], [0.5, 0.0, 0.0]], dtype=torch.float64)
    vel = torch.tensor([[0.0, -v, 0.0], [0.0, v, 0.0]], dtype=torch.float64)
    return pos.repeat(count, 1, 1), vel.repeat(count, 1, 1), torch.ones(count, 2, dtype=torch.float64)


class Constant(DtPolicy):
    """A constant step, neither compilable nor selectable."""

    name = "constant"
    parameter = "dt"
    default = 0.01

    def dt(self, s: Systems) -> torch.Tensor:
        return self.value


class Collecting(MetricSink):
    """Keeps every epoch's metrics in a list (``Collecting.epochs``, shared by all instances)."""

    name = "collecting"
    epochs: list[dict] = []

    def epoch(self, metrics: dict) -> None:
        self.epochs.append(metrics)


class HundredSteps(Reference):
    """Symplectic Euler in 100 equal steps to t_end: an outside integrator for ``aits simulate --reference``."""

    name = "hundred_steps"

    def run(self, s: Systems, t_end: float, gravity: Gravity) -> ReferenceResult:
        e0, errors = gravity.energy(s), []
        dt = (t_end - s.time) / 100  # from the system's time to t_end
        for _ in range(100):
            s = SymplecticEuler().step(s, dt, gravity)
            errors.append(float(((gravity.energy(s) - e0) / e0).abs().max()))
        return ReferenceResult("dt=t/100", 100, 100, max(errors), errors[-1], 0.0, float(s.time[0]))


FAKES = {  # kind -> (name, the object registered)
    "integrator": ("symplectic_euler", SymplecticEuler()),
    "features": ("separation", Separation),
    "loss": ("overshoot", Overshoot()),
    "initial_conditions": ("circular_pair", circular_pair),
    "policy": ("constant", Constant),
    "metric_sink": ("collecting", Collecting),
    "reference": ("hundred_steps", HundredSteps()),
}


def plugin_module(name: str, **hooks) -> types.ModuleType:
    """A module with the given functions as hook implementations."""
    module = types.ModuleType(name)
    for hook_name, function in hooks.items():
        setattr(module, hook_name, hookimpl(function))
    return module


def registering(name: str, *objects: tuple[str, object]) -> types.ModuleType:
    """A plugin module whose ``aits_register`` registers ``objects``, (kind, object) pairs, in order."""
    def register(registrar) -> None:
        for kind, obj in objects:
            getattr(registrar, kind)(obj)

    return plugin_module(name, aits_register=register)


def every_fake() -> types.ModuleType:
    """A plugin that registers one fake of every kind."""
    return registering("fakes", *((kind, obj) for kind, (_, obj) in FAKES.items()))


def legacy(hook_name: str, obj) -> types.ModuleType:
    """A plugin in the deprecated style: ``hook_name(register)`` registering ``obj``."""
    return plugin_module("old_style", **{hook_name: lambda register: register(obj)})
