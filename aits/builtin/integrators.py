"""Built-in integrator: kick-drift-kick leapfrog (velocity Verlet)."""

from __future__ import annotations

import torch

from aits.hookspecs import hookimpl
from aits.interfaces import Integrator
from aits.physics import Gravity, Systems


class Leapfrog(Integrator):
    """Kick-drift-kick leapfrog (velocity Verlet): symplectic, time-reversible, 2nd order."""

    name = "leapfrog"
    order = 2
    force_evaluations = 1

    def step(self, s: Systems, dt: torch.Tensor, gravity: Gravity) -> Systems:
        h = dt[:, None, None]
        vel = s.vel + 0.5 * h * s.acc
        pos = s.pos + h * vel
        acc = gravity.accelerations(pos, s.mass)
        return Systems(pos, vel + 0.5 * h * acc, s.mass, acc, s.time + dt)


@hookimpl
def aits_register_integrators(register) -> None:
    register(Leapfrog())
