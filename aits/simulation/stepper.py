"""The steps of a batched run: what the loop carries from step to step, and ``count`` steps of it.

The step is kept lean: one policy call, one integrator step and one energy evaluation, no host
synchronisation, so that the same function runs eagerly or compiled (:mod:`~aits.simulation.chunks`).
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from aits.interfaces import DtPolicy
from aits.physics import Systems
from aits.physics.pairs import EnergyMeter


class Carry(NamedTuple):
    """What the loop carries from step to step, each (B,) but the systems."""

    s: Systems
    remaining: torch.Tensor  # time left to t_end: 0 once arrived, NaN once broken
    steps: torch.Tensor  # int64
    energy: torch.Tensor  # after the last step
    e_hi: torch.Tensor  # the highest and lowest energy so far
    e_lo: torch.Tensor

    def take(self, keep: torch.Tensor) -> Carry:
        return Carry(self.s.index(keep), *(x[keep] for x in self[1:]))


def advance(policy: DtPolicy, meter: EnergyMeter, c: Carry, count: int = 1) -> tuple[Carry, torch.Tensor, torch.Tensor]:
    """``count`` steps of every system; also the highest and lowest energy of these steps (B,).

    Pure in its tensors (a policy's own state, such as the learned policy's history, is updated as
    its ``step`` does eagerly), so that torch.compile can trace it with a fixed ``count``.
    """
    s, remaining, steps, energy, hi, lo = c.s, c.remaining, c.steps, c.energy, None, None
    for _ in range(count):
        active = remaining > 0
        dt = torch.minimum(policy.dt(s), remaining)  # 0 once arrived; the last step lands on t_end
        s = policy.step(s, dt)
        remaining = remaining - dt
        energy = meter(s)
        hi = energy if hi is None else torch.maximum(hi, energy)
        lo = energy if lo is None else torch.minimum(lo, energy)
        steps = steps + active
    return Carry(s, remaining, steps, energy, torch.maximum(c.e_hi, hi), torch.minimum(c.e_lo, lo)), hi, lo
