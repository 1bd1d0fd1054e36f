"""The batched integration loop: B systems advance together, each with its own setting of the
policy's free parameter and its own end time; a system that has arrived stops counting steps.

The loop is kept lean: one policy call, one integrator step and one energy evaluation per step,
no host synchronisation inside a chunk of ``check_every`` steps.
"""

from __future__ import annotations

import inspect
import math
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from typing import Any, Iterator

import torch

from aits.errors import UserError
from aits.interfaces import DtPolicy, Integrator
from aits.physics import Gravity, Systems
from aits.physics.gravity import angular_momentum, momentum
from aits.simulation.pairs import Pairs

DEFAULT_MAX_STEPS = 5_000_000
SINGLE_THREAD_BELOW = 1 << 16  # elements of a (B, N, N, D) pair tensor


@contextmanager
def cpu_threads_for(s: Systems) -> Iterator[None]:
    """Run small CPU batches on one thread: their tensors are far too small to gain from intra-op
    threads, and on a busy machine those threads' synchronisation can cost 50x the work."""
    small = s.pos.device.type == "cpu" and s.batch * s.bodies**2 * s.dims < SINGLE_THREAD_BELOW
    before = torch.get_num_threads()
    if small:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@dataclass(frozen=True)
class Setup:
    """What is integrated: ``systems`` (B), each up to its own ``t_end`` (B,)."""

    systems: Systems
    t_end: torch.Tensor
    gravity: Gravity
    integrator: Integrator

    def repeat(self, count: int) -> Setup:
        """``count`` copies of a single-system setup, side by side."""
        if self.systems.batch != 1:
            raise ValueError("only a single-system setup can be replicated")
        idx = torch.zeros(count, dtype=torch.long, device=self.t_end.device)
        return Setup(self.systems.index(idx), self.t_end[idx], self.gravity, self.integrator)


@dataclass(frozen=True)
class PolicySpec:
    """A registered policy class with its options (everything but the free parameter)."""

    name: str
    cls: type[DtPolicy]
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def parameter(self) -> str:
        return self.cls.parameter

    @property
    def default(self) -> float:
        return float(self.cls.default)

    def check_options(self) -> None:
        accepted = [p for p in inspect.signature(self.cls.__init__).parameters
                    if p not in ("self", "value", "gravity", "integrator")]
        for key in self.options:
            if key not in accepted:
                known = ", ".join(accepted) if accepted else "none"
                raise UserError(f"policy {self.name} has no option {key!r} (options: {known})")

    def build(self, values: torch.Tensor, setup: Setup) -> DtPolicy:
        self.check_options()
        return self.cls(values, setup.gravity, setup.integrator, **self.options)


class EnergyMeter:
    """Total energy (B,) of systems whose masses do not change (pair tables cached)."""

    def __init__(self, gravity: Gravity, mass: torch.Tensor, dims: int) -> None:
        self.pairs = Pairs(mass, gravity)
        self.half_m = (0.5 * mass).repeat_interleave(dims, 1)  # (B, N*D), matching vel.flatten(1)

    def __call__(self, s: Systems) -> torch.Tensor:
        v = s.vel.flatten(1)
        return torch.linalg.vecdot(self.half_m * v, v) + self.pairs.potential_energy(s.pos)


class Trace:
    """Per-window records of a batched run, at most ``2 * cap`` windows of ``stride`` steps each
    (adjacent windows merge and the stride doubles when full): time and step count at the window's
    end, the highest and lowest energy inside it, and the positions at its end."""

    def __init__(self, e0: torch.Tensor, cap: int = 2048) -> None:
        self.e0, self.cap, self.stride, self.count = e0, cap, 1, 0
        self.rows = list(range(len(e0)))  # the original index of each system still recorded
        self.hi: torch.Tensor | None = None
        self.lo: torch.Tensor | None = None
        self.records: list[tuple[torch.Tensor, ...]] = []  # (time, steps, hi, lo, pos)

    def select(self, keep: torch.Tensor) -> None:
        """Keep recording only the systems ``keep`` (positions in the current batch)."""
        self.rows = [self.rows[i] for i in keep.tolist()]
        self.records = [tuple(x[keep] for x in record) for record in self.records]
        self.e0 = self.e0[keep]
        if self.hi is not None and self.lo is not None:
            self.hi, self.lo = self.hi[keep], self.lo[keep]

    def observe(self, s: Systems, steps: torch.Tensor, energy: torch.Tensor) -> None:
        if self.hi is None:
            self.hi, self.lo = energy, energy
        else:
            self.hi, self.lo = torch.maximum(self.hi, energy), torch.minimum(self.lo, energy)
        self.count += 1
        if self.count == self.stride:
            self.close_window(s, steps)

    def close_window(self, s: Systems, steps: torch.Tensor) -> None:
        if self.hi is None or self.lo is None:
            return
        self.records.append((s.time, steps.clone(), self.hi, self.lo, s.pos))
        self.hi, self.lo, self.count = None, None, 0
        if len(self.records) >= 2 * self.cap:
            self.records = [(t, n, torch.maximum(h0, h1), torch.minimum(l0, l1), x)
                            for (_, _, h0, l0, _), (t, n, h1, l1, x) in zip(self.records[0::2], self.records[1::2])]
            self.stride *= 2

    def row(self, index: int) -> dict[str, torch.Tensor]:
        """One system's record (CPU tensors): ``time`` at the end of each window, the mean ``dt`` and
        the largest |dE/E0| in it, ``pos`` (W, N, D) at its end; windows after its last step dropped.
        ``index`` is the system's place in the batch as it started."""
        at = self.rows.index(index)
        t, steps, hi, lo, pos = (torch.stack([r[k][at] for r in self.records]).cpu() for k in range(5))
        e0 = self.e0[at].cpu()
        prev_steps = torch.cat([steps.new_zeros(1), steps[:-1]])
        prev_t = torch.cat([t.new_zeros(1), t[:-1]])
        keep = steps > prev_steps
        dt = (t - prev_t) / (steps - prev_steps).clamp_min(1)
        error = torch.maximum((hi - e0).abs(), (lo - e0).abs()) / e0.abs()
        return {"time": t[keep], "dt": dt[keep], "error": error[keep], "pos": pos[keep]}


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
    wall_time_s: float
    iterations: int
    hit_max_steps: bool
    trace: Trace | None


@dataclass(frozen=True)
class _Rows:
    """The fixed per-system facts of a batch, indexed together when systems leave it."""

    index: torch.Tensor  # each system's place in the batch as it started
    value: torch.Tensor
    t_end: torch.Tensor
    e0: torch.Tensor
    p0: torch.Tensor
    l0: torch.Tensor

    def take(self, keep: torch.Tensor) -> _Rows:
        return _Rows(*(getattr(self, f.name)[keep] for f in fields(self)))


def integrate(setup: Setup, spec: PolicySpec, values: torch.Tensor, *, stop_below: float | None = None,
              drop_above: float | None = None, max_steps: int = DEFAULT_MAX_STEPS, record: bool = False,
              check_every: int = 128) -> BatchOutcome:
    """Integrate every system of ``setup`` with ``spec`` at its own parameter value (B,).

    Energy is measured after every step; the last step of each system is shortened to land on its
    ``t_end``. With ``stop_below``, the batch stops as soon as a system has arrived with max
    |dE/E0| <= stop_below: every system still running then needs more steps than it.

    For policies that can ``select`` rows, systems that have arrived leave the batch, and with
    ``drop_above`` so do those whose max |dE/E0| already exceeds it, except the one with the
    smallest parameter value (it runs on, to count the steps of the cheapest failing setting).
    """
    s = setup.systems
    values = values.to(device=s.pos.device, dtype=s.pos.dtype)
    policy = spec.build(values, setup)
    can_drop = callable(getattr(policy, "select", None))
    with torch.inference_mode(), cpu_threads_for(s):
        meter = EnergyMeter(setup.gravity, s.mass, s.dims)
        e0 = meter(s)
        if not bool((e0 != 0).all()):
            raise UserError("the system's total energy is 0: the relative energy error is undefined")
        rows = _Rows(torch.arange(s.batch, device=e0.device), values, setup.t_end, e0, momentum(s), angular_momentum(s))
        remaining, energy, e_hi, e_lo = setup.t_end.clone(), e0, e0, e0
        steps = torch.zeros(s.batch, dtype=torch.int64, device=s.pos.device)
        trace = Trace(e0) if record else None
        results: dict[int, RowResult] = {}
        policy.reset(s)
        start, iterations, hit_cap = time.perf_counter(), 0, False
        while True:
            for _ in range(min(check_every, max_steps - iterations)):
                active = remaining > 0
                dt = torch.minimum(policy.dt(s), remaining)  # 0 once arrived; the last step lands on t_end
                s = policy.step(s, dt)
                remaining = remaining - dt
                energy = meter(s)
                e_hi, e_lo = torch.maximum(e_hi, energy), torch.minimum(e_lo, energy)
                steps += active
                if trace is not None:
                    trace.observe(s, steps, energy)
            iterations = min(iterations + check_every, max_steps)
            max_error = torch.maximum(e_hi - rows.e0, rows.e0 - e_lo) / rows.e0.abs()
            remaining = remaining.masked_fill(~(torch.isfinite(max_error) & torch.isfinite(remaining)), math.nan)
            if stop_below is not None and bool(((remaining == 0) & (max_error <= stop_below)).any()):
                break
            if not bool((remaining > 0).any()):
                break
            if iterations >= max_steps:
                hit_cap = True
                break
            leaving = _leaving(remaining, max_error, rows.value, drop_above) if can_drop else None
            if leaving is not None:
                results.update(_results(rows, s, steps, max_error, energy, remaining, policy, leaving))
                keep = (~leaving).nonzero().squeeze(1)
                rows, s, remaining, steps = rows.take(keep), s.index(keep), remaining[keep], steps[keep]
                energy, e_hi, e_lo = energy[keep], e_hi[keep], e_lo[keep]
                policy.select(keep)
                meter = EnergyMeter(setup.gravity, s.mass, s.dims)
                if trace is not None:
                    trace.select(keep)
        wall = time.perf_counter() - start
        if trace is not None:
            trace.close_window(s, steps)
        results.update(_results(rows, s, steps, max_error, energy, remaining, policy))
    return BatchOutcome([results[i] for i in range(len(values))], wall, iterations, hit_cap, trace)


def _leaving(remaining: torch.Tensor, max_error: torch.Tensor, value: torch.Tensor,
             drop_above: float | None) -> torch.Tensor | None:
    """Which systems may leave the batch: arrived or broken ones and, with ``drop_above``, known
    failures but the smallest-valued one. None unless at least a quarter of the batch may leave
    (each departure costs a re-indexing)."""
    running = remaining > 0
    leaving = ~running
    if drop_above is not None:
        failed = running & (max_error > drop_above)
        if bool(failed.any()):
            failed[torch.where(failed, value, math.inf).argmin()] = False
            leaving |= failed
    count = int(leaving.sum())
    return leaving if count and count >= len(leaving) // 4 and count < len(leaving) else None


def _results(rows: _Rows, s: Systems, steps: torch.Tensor, max_error: torch.Tensor, energy: torch.Tensor,
             remaining: torch.Tensor, policy: DtPolicy, mask: torch.Tensor | None = None) -> dict[int, RowResult]:
    """The results of the systems ``mask`` (default: all), keyed by their place in the first batch."""
    if mask is not None:
        pick = mask.nonzero().squeeze(1)
        rows, s, steps, max_error = rows.take(pick), s.index(pick), steps[pick], max_error[pick]
        energy, remaining = energy[pick], remaining[pick]
    final_error = (energy - rows.e0).abs() / rows.e0.abs()
    end_time = torch.where(torch.isfinite(remaining), rows.t_end - remaining, s.time)  # the exact sum of the steps
    dp = (momentum(s) - rows.p0).norm(dim=-1)
    dl = (angular_momentum(s) - rows.l0).norm(dim=-1)
    per_step = policy.force_evaluations_per_step
    status = ["finished" if r == 0 else "nonfinite" if math.isnan(r) else "stopped" for r in remaining.tolist()]
    columns = zip(rows.index.tolist(), rows.value.tolist(), steps.tolist(), max_error.tolist(), final_error.tolist(),
                  dp.tolist(), dl.tolist(), end_time.tolist(), status)
    return {i: RowResult(v, n, n * per_step, me, fe, p, ll, t, st) for i, v, n, me, fe, p, ll, t, st in columns}
