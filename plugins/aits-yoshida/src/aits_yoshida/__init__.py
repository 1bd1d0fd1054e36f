"""aits plugin: the 4th-order Yoshida (Forest-Ruth) integrator ``yoshida4``.

A symmetric composition of three kick-drift-kick leapfrog steps of sizes ``w1 dt, w0 dt, w1 dt`` with
``w1 = 1 / (2 - 2^(1/3))`` and ``w0 = -2^(1/3) w1`` (so ``2 w1 + w0 = 1``). The composition cancels
the leapfrog's third-order local error, keeps it symplectic and time-reversible, and costs three force
evaluations per step (the acceleration at the start is carried in the state).
"""

from __future__ import annotations

import torch

from aits.hookspecs import hookimpl
from aits.interfaces import Integrator
from aits.physics import Gravity, Systems
from aits.registry import Registrar

__version__ = "0.1.0"

CBRT2 = 2.0 ** (1.0 / 3.0)
W1 = 1.0 / (2.0 - CBRT2)
W0 = -CBRT2 * W1
WEIGHTS = (W1, W0, W1)


class Yoshida4(Integrator):
    """Yoshida / Forest-Ruth: three leapfrog sub-steps, symplectic, time-reversible, 4th order."""

    name = "yoshida4"
    order = 4
    force_evaluations = 3

    def step(self, s: Systems, dt: torch.Tensor, gravity: Gravity) -> Systems:
        pos, vel, acc = s.pos, s.vel, s.acc
        for w in WEIGHTS:
            h = w * dt[:, None, None]
            vel = vel + 0.5 * h * acc
            pos = pos + h * vel
            acc = gravity.accelerations(pos, s.mass)
            vel = vel + 0.5 * h * acc
        return Systems(pos, vel, s.mass, acc, s.time + dt)


@hookimpl
def aits_register(registrar: Registrar) -> None:
    registrar.integrator(Yoshida4())
