"""Built-in integrator: kick-drift-kick leapfrog (velocity Verlet)."""

from __future__ import annotations

import torch

from aits.hookspecs import hookimpl
from aits.interfaces import Integrator
from aits.physics import Gravity, Systems
from aits.registry import Registrar


def _kick_drift(s: Systems, dt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The first half kick and the drift: (dt broadcast, half-step velocities, end positions)."""
    h = dt[:, None, None]
    vel = s.vel + 0.5 * h * s.acc
    return h, vel, s.pos + h * vel


class Leapfrog(Integrator):
    """Kick-drift-kick leapfrog (velocity Verlet): symplectic, time-reversible, 2nd order."""

    name = "leapfrog"
    order = 2
    force_evaluations = 1
    free_end_positions = True  # the drift needs only the acceleration carried in the state

    def step(self, s: Systems, dt: torch.Tensor, gravity: Gravity) -> Systems:
        h, vel, pos = _kick_drift(s, dt)
        acc = gravity.accelerations(pos, s.mass)
        return Systems(pos, vel + 0.5 * h * acc, s.mass, acc, s.time + dt)

    def end_positions(self, s: Systems, dt: torch.Tensor, gravity: Gravity) -> torch.Tensor:
        return _kick_drift(s, dt)[2]


@hookimpl
def aits_register(registrar: Registrar) -> None:
    registrar.integrator(Leapfrog())
