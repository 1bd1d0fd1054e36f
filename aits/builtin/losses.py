"""Built-in losses on the relative energy error of one step."""

from __future__ import annotations

import math

import torch

from aits.hookspecs import hookimpl
from aits.interfaces import Loss
from aits.registry import Registrar


class EnergyBand(Loss):
    """Zero while log10(rel_dE) lies in [log10 E_lower, log10 E_upper], quadratic outside: pushes dt
    down when the error is too large and up when it is needlessly small."""

    name = "energy_band"

    def __call__(self, rel_dE: torch.Tensor, config) -> torch.Tensor:
        log_err = torch.log10(rel_dE.clamp_min(1e-300))
        above = (log_err - math.log10(config.E_upper)).clamp_min(0)
        below = (math.log10(config.E_lower) - log_err).clamp_min(0)
        return above**2 + below**2


class EnergyTarget(Loss):
    """Quadratic in log10(rel_dE) about the band's geometric centre sqrt(E_lower E_upper): holds the
    error of every step at one level.

    For leapfrog the energy error of a run accumulates from per-step errors ~ dt^3 dH2/dt (H2 the
    leading shadow-Hamiltonian term); minimising the number of steps at a given total error by a
    Lagrange multiplier gives an equal error in every step. A band leaves the shape of the step
    sequence free inside it; this loss pins it to that optimum.
    """

    name = "energy_target"

    def __call__(self, rel_dE: torch.Tensor, config) -> torch.Tensor:
        target = 0.5 * (math.log10(config.E_lower) + math.log10(config.E_upper))
        return (torch.log10(rel_dE.clamp_min(1e-300)) - target) ** 2


class GateHinge(Loss):
    """Quadratic in log10(rel_dE) above log10 E_upper only: never pushes dt up (for comparison —
    a policy trained with it tends to shrink its steps)."""

    name = "gate_hinge"

    def __call__(self, rel_dE: torch.Tensor, config) -> torch.Tensor:
        return (torch.log10(rel_dE.clamp_min(1e-300)) - math.log10(config.E_upper)).clamp_min(0) ** 2


@hookimpl
def aits_register(registrar: Registrar) -> None:
    registrar.loss(EnergyBand())
    registrar.loss(EnergyTarget())
    registrar.loss(GateHinge())
