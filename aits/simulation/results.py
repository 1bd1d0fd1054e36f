"""The outcome of a batched run: one :class:`RowResult` per system."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch

from aits.interfaces import DtPolicy
from aits.physics.gravity import angular_momentum, momentum
from aits.simulation.stepper import Carry
from aits.simulation.trace import Trace


@dataclass(frozen=True)
class RowResult:
    """The outcome for one system of a batch. ``status``: finished (reached t_end), nonfinite
    (NaN/inf appeared) or stopped (halted before t_end: by a stop rule, as a known failure, or by
    the step cap)."""

    value: float
    steps: int
    force_evaluations: float
    max_error: float
    final_error: float
    momentum_drift: float
    angular_momentum_drift: float
    end_time: float
    status: str

    def passes(self, target: float) -> bool:
        return self.status == "finished" and self.max_error <= target


@dataclass
class BatchOutcome:
    rows: list[RowResult]
    wall_time_s: float  # compilation included
    iterations: int
    hit_max_steps: bool
    trace: Trace | None
    compile_time_s: float = 0.0  # the first compiled call (compiling, or a cache look-up); 0: not compiled

    @property
    def iteration_cost_s(self) -> float:
        """Wall time of one iteration of the loop (one step of every system), compilation excluded."""
        return (self.wall_time_s - self.compile_time_s) / max(self.iterations, 1)


@dataclass(frozen=True)
class Rows:
    """The fixed per-system facts of a batch, indexed together when systems leave it."""

    index: torch.Tensor  # each system's place in the batch as it started
    value: torch.Tensor
    t_end: torch.Tensor
    e0: torch.Tensor
    p0: torch.Tensor
    l0: torch.Tensor

    def take(self, keep: torch.Tensor) -> Rows:
        return Rows(*(getattr(self, f.name)[keep] for f in fields(self)))


def row_results(rows: Rows, c: Carry, max_error: torch.Tensor, policy: DtPolicy,
             mask: torch.Tensor | None = None) -> dict[int, RowResult]:
    """The results of the systems ``mask`` (default: all), keyed by their place in the first batch."""
    if mask is not None:
        pick = mask.nonzero().squeeze(1)
        rows, c, max_error = rows.take(pick), c.take(pick), max_error[pick]
    s, steps, energy, remaining = c.s, c.steps, c.energy, c.remaining
    final_error = (energy - rows.e0).abs() / rows.e0.abs()
    end_time = torch.where(torch.isfinite(remaining), rows.t_end - remaining, s.time)  # the exact sum of the steps
    dp = (momentum(s) - rows.p0).norm(dim=-1)
    dl = (angular_momentum(s) - rows.l0).norm(dim=-1)
    per_step = policy.force_evaluations_per_step
    status = ["finished" if r == 0 else "nonfinite" if math.isnan(r) else "stopped" for r in remaining.tolist()]
    columns = zip(rows.index.tolist(), rows.value.tolist(), steps.tolist(), max_error.tolist(), final_error.tolist(),
                  dp.tolist(), dl.tolist(), end_time.tolist(), status)
    return {i: RowResult(v, n, n * per_step, me, fe, p, ll, t, st) for i, v, n, me, fe, p, ll, t, st in columns}
