"""Built-in integrator: kick-drift-kick leapfrog (velocity Verlet)."""

from __future__ import annotations

import torch

from aits.hookspecs import hookimpl
from aits.interfaces import Integrator
from aits.physics import Gravity, Systems, kdk
from aits.registry import Registrar


class Leapfrog(Integrator):
    """Kick-drift-kick leapfrog (velocity Verlet): symplectic, time-reversible, 2nd order."""

    name = "leapfrog"
    order = 2
    force_evaluations = 1
    free_end_positions = True  # the drift needs only the acceleration carried in the state
    cuts_nonfinite_rows = True  # the closed form's backward (kdk.step_with_energy)

    def step(self, s: Systems, dt: torch.Tensor, gravity: Gravity) -> Systems:
        pos, vel, acc = kdk.kdk(s.pos, s.vel, s.mass, s.acc, dt, gravity)
        return Systems(pos, vel, s.mass, acc, s.time + dt)

    def step_with_energy(self, s: Systems, dt: torch.Tensor, gravity: Gravity) -> tuple[Systems, torch.Tensor]:
        """The step and its energy with the closed-form derivative with respect to ``dt``."""
        return kdk.step_with_energy(s, dt, gravity)

    def end_positions(self, s: Systems, dt: torch.Tensor, gravity: Gravity) -> torch.Tensor:
        return kdk.kick_drift(s.pos, s.vel, s.acc, dt)[2]


@hookimpl
def aits_register(registrar: Registrar) -> None:
    registrar.integrator(Leapfrog())
