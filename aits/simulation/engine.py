"""The batched integration loop: B systems advance together, each with its own setting of the
policy's free parameter and its own end time; a system that has arrived stops counting steps.

The loop is kept lean: one policy call, one integrator step and one energy evaluation per step,
no host synchronisation inside a chunk of ``check_every`` steps. For long runs the loop body can
be compiled (torch.compile), ``CHUNK`` steps per call: on small systems the eager loop's cost is
almost all per-operation overhead, which compilation removes.
"""

from __future__ import annotations

import functools
import inspect
import math
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from typing import Any, Callable, Iterator, NamedTuple

import torch

from aits.errors import UserError
from aits.interfaces import DtPolicy, Integrator
from aits.physics import Gravity, Systems
from aits.physics.gravity import angular_momentum, momentum
from aits.runtime import warn_compile_failed
from aits.simulation.pairs import Pairs

DEFAULT_MAX_STEPS = 5_000_000
SINGLE_THREAD_BELOW = 1 << 16  # elements of a (B, N, N, D) pair tensor
CHUNK = 8  # steps per call of the compiled loop body (more: faster steps, but longer to compile)
# Automatic compilation: compiling costs ~5 s (inductor's on-disk cache warm) to over a minute
# (cold, busy machine) and then runs 5-30x faster, so it pays only once the rest of a run would
# take longer than this, eagerly.
COMPILE_PAYS_S = 30.0


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
    """Per-window records of a batched run, at most ``2 * cap`` windows of ``stride`` observations
    each (an observation: one eager step or one compiled chunk; adjacent windows merge and the
    stride doubles when full): time and step count at the window's end, the highest and lowest
    energy inside it, and the positions at its end."""

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

    def observe(self, s: Systems, steps: torch.Tensor, hi: torch.Tensor, lo: torch.Tensor) -> None:
        """Record the state after one or more steps whose highest and lowest energies are hi, lo."""
        if self.hi is None or self.lo is None:
            self.hi, self.lo = hi, lo
        else:
            self.hi, self.lo = torch.maximum(self.hi, hi), torch.minimum(self.lo, lo)
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
    wall_time_s: float  # compilation included
    iterations: int
    hit_max_steps: bool
    trace: Trace | None
    compile_time_s: float = 0.0  # the first compiled call (compiling, or a cache look-up); 0: not compiled


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


def _chunk(policy: DtPolicy, meter: EnergyMeter, c: Carry) -> tuple[Carry, torch.Tensor, torch.Tensor]:
    return advance(policy, meter, c, CHUNK)


@functools.cache
def compiled_chunk() -> Callable[[DtPolicy, EnergyMeter, Carry], tuple[Carry, torch.Tensor, torch.Tensor]]:
    """:func:`advance` of ``CHUNK`` steps, compiled for fixed shapes (one graph per policy class,
    batch shape and constants, cached by torch.compile; hence the raised recompile limit). Inductor's
    C++ wrapper: the calls of a chunk's ~30 kernels from C++, not Python (1.2-1.5x the steps/s of
    B = 1 on a CPU, for about the same compile time)."""
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)
    return torch.compile(_chunk, fullgraph=True, dynamic=False, options={"cpp_wrapper": True})


class _Body:
    """The loop body: one eager step per call or, once compiled, ``CHUNK`` steps per call.

    ``pending``: compile at the next chunk; ``auto``: integrate may still decide to. If compiling
    fails, a one-line warning, and the steps stay eager."""

    def __init__(self, policy: DtPolicy, meter: EnergyMeter, compiled: bool | None) -> None:
        self.policy, self.meter = policy, meter
        compilable = compiled is not False and getattr(policy, "compilable", False)
        self.pending, self.auto = compilable and compiled is True, compilable and compiled is None
        self.chunk: Callable[[DtPolicy, EnergyMeter, Carry], tuple[Carry, torch.Tensor, torch.Tensor]] | None = None
        self.compile_time_s = 0.0  # the first compiled call: compilation (or a cache look-up) and CHUNK steps

    @property
    def fixed_shape(self) -> bool:
        """Compiled or about to be: no system may leave the batch."""
        return self.pending or self.chunk is not None

    def __call__(self, c: Carry, todo: int) -> tuple[Carry, torch.Tensor, torch.Tensor, int]:
        """At most ``todo`` steps: the carry, the highest and lowest energy of these steps, their count."""
        if todo >= CHUNK and self.pending:
            t0, self.pending = time.perf_counter(), False
            out = self._first_compiled(c)
            if out is not None:
                self.chunk, self.compile_time_s = compiled_chunk(), time.perf_counter() - t0
                return *out, CHUNK
        if todo >= CHUNK and self.chunk is not None:
            return *self.chunk(self.policy, self.meter, c), CHUNK
        return *advance(self.policy, self.meter, c), 1

    def _first_compiled(self, c: Carry) -> tuple[Carry, torch.Tensor, torch.Tensor] | None:
        # Copies: torch.compile would take tensors created outside inference mode, or the same tensor
        # passed twice (e_hi, e_lo), for other inputs than those of the following calls and recompile.
        c = Carry(Systems(*(x.clone() for x in c.s.tensors())), *(x.clone() for x in c[1:]))
        try:
            return compiled_chunk()(self.policy, self.meter, c)
        except Exception as exc:  # any failure to compile: the eager loop still works
            warn_compile_failed(exc, "the simulation", stacklevel=4)
            return None


def _worth_compiling(c: Carry, t_end: torch.Tensor, seconds: float, iterations: int, steps_left: int) -> bool:
    """Whether the rest of the run, at its eager pace so far, would take more than ``COMPILE_PAYS_S``.
    The rest lasts at least until the first running system arrives: its steps so far times its
    time left over its time done."""
    done = t_end - c.remaining
    arrival = torch.where((c.remaining > 0) & (done > 0), c.steps * (c.remaining / done), math.inf).amin()
    return min(float(arrival), steps_left) * seconds / iterations > COMPILE_PAYS_S


def integrate(setup: Setup, spec: PolicySpec, values: torch.Tensor, *, stop_below: float | None = None,
              drop_above: float | None = None, max_steps: int = DEFAULT_MAX_STEPS, record: bool = False,
              check_every: int = 128, compiled: bool | None = None) -> BatchOutcome:
    """Integrate every system of ``setup`` with ``spec`` at its own parameter value (B,).

    Energy is measured after every step; the last step of each system is shortened to land on its
    ``t_end``. With ``stop_below``, the batch stops as soon as a system has arrived with max
    |dE/E0| <= stop_below: every system still running then needs more steps than it.

    For policies that can ``select`` rows, systems that have arrived leave the batch, and with
    ``drop_above`` so do those whose max |dE/E0| already exceeds it, except the one with the
    smallest parameter value (it runs on, to count the steps of the cheapest failing setting).

    ``compiled``: True runs the loop compiled (``CHUNK`` steps per call) from the start, False
    eagerly, None (default) switches to compiled at a check once the rest of the run looks long
    enough (``COMPILE_PAYS_S``). Only ``compilable`` policies compile; a compiled batch keeps its
    shape (no system leaves it). If compilation fails, a warning says so and the run goes on eagerly.
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
        c = Carry(s, setup.t_end.clone(), torch.zeros(s.batch, dtype=torch.int64, device=s.pos.device), e0, e0, e0)
        trace = Trace(e0) if record else None
        results: dict[int, RowResult] = {}
        policy.reset(s)
        body = _Body(policy, meter, compiled)
        start, iterations, hit_cap = time.perf_counter(), 0, False
        while True:
            todo = min(check_every, max_steps - iterations)
            while todo > 0:
                c, hi, lo, done = body(c, todo)
                todo -= done
                if trace is not None:
                    trace.observe(c.s, c.steps, hi, lo)
            iterations = min(iterations + check_every, max_steps)
            max_error = torch.maximum(c.e_hi - rows.e0, rows.e0 - c.e_lo) / rows.e0.abs()
            c = c._replace(remaining=c.remaining.masked_fill(~(torch.isfinite(max_error) & torch.isfinite(c.remaining)),
                                                             math.nan))
            if stop_below is not None and bool(((c.remaining == 0) & (max_error <= stop_below)).any()):
                break
            if not bool((c.remaining > 0).any()):
                break
            if iterations >= max_steps:
                hit_cap = True
                break
            if body.auto and _worth_compiling(c, rows.t_end, time.perf_counter() - start, iterations,
                                              max_steps - iterations):  # decided before any system leaves
                body.auto, body.pending = False, True
            can_drop = can_drop and not body.fixed_shape
            leaving = _leaving(c.remaining, max_error, rows.value, drop_above) if can_drop else None
            if leaving is not None:
                results.update(_results(rows, c, max_error, policy, leaving))
                keep = (~leaving).nonzero().squeeze(1)
                rows, c = rows.take(keep), c.take(keep)
                policy.select(keep)
                body.meter = EnergyMeter(setup.gravity, c.s.mass, c.s.dims)
                if trace is not None:
                    trace.select(keep)
        wall = time.perf_counter() - start
        if trace is not None:
            trace.close_window(c.s, c.steps)
        results.update(_results(rows, c, max_error, policy))
    return BatchOutcome([results[i] for i in range(len(values))], wall, iterations, hit_cap, trace,
                        body.compile_time_s)


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


def _results(rows: _Rows, c: Carry, max_error: torch.Tensor, policy: DtPolicy,
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
