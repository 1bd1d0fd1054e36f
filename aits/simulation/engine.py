"""The batched integration loop: B systems advance together, each with its own setting of the
policy's free parameter and its own end time; a system that has arrived stops counting steps.

The loop checks on the host every ``check_every`` steps; the steps themselves are
:mod:`~aits.simulation.stepper`'s, eager or compiled (:mod:`~aits.simulation.chunks`).
"""

from __future__ import annotations

import math
import time
from contextlib import contextmanager
from typing import Iterator

import torch

from aits.errors import UserError
from aits.physics import Systems
from aits.physics.gravity import angular_momentum, momentum
from aits.physics.pairs import EnergyMeter
from aits.simulation.chunks import Body, worth_compiling
from aits.simulation.problem import PolicySpec, Setup
from aits.simulation.results import BatchOutcome, RowResult, Rows, row_results
from aits.simulation.stepper import Carry
from aits.simulation.trace import Trace

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


def integrate(setup: Setup, spec: PolicySpec, values: torch.Tensor, *, stop_below: float | None = None,
              drop_above: float | None = None, max_steps: int = DEFAULT_MAX_STEPS, record: bool = False,
              check_every: int = 128, compiled: bool | None = None) -> BatchOutcome:
    """Integrate every system of ``setup`` with ``spec`` at its own parameter value (B,).

    Energy is measured after every step; the last step of each system is shortened to land on its
    ``t_end``. With ``stop_below``, the batch stops as soon as a system has arrived with max
    |dE/E0| <= stop_below: every system still running then needs more steps than it.

    For ``selectable`` policies, systems that have arrived leave the batch, and with
    ``drop_above`` so do those whose max |dE/E0| already exceeds it, except the one with the
    smallest parameter value (it runs on, to count the steps of the cheapest failing setting).

    ``compiled``: True runs the loop compiled (``CHUNK`` steps per call, :mod:`~aits.simulation.chunks`)
    from the start, False eagerly, None (default) switches to compiled at a check once the rest of the
    run looks long enough (``COMPILE_PAYS_S``). Only ``compilable`` policies compile; a compiled batch
    keeps its shape (no system leaves it). If compilation fails, a warning says so and the run goes on eagerly.
    """
    s = setup.systems
    values = values.to(device=s.pos.device, dtype=s.pos.dtype)
    policy = spec.build(values, setup)
    can_drop = policy.selectable
    with torch.inference_mode(), cpu_threads_for(s):
        meter = EnergyMeter(setup.gravity, s.mass, s.dims)
        e0 = meter(s)
        if not bool((e0 != 0).all()):
            raise UserError("the system's total energy is 0: the relative energy error is undefined")
        rows = Rows(torch.arange(s.batch, device=e0.device), values, setup.t_end, e0, momentum(s), angular_momentum(s))
        c = Carry(s, setup.t_end.clone(), torch.zeros(s.batch, dtype=torch.int64, device=s.pos.device), e0, e0, e0)
        trace = Trace(e0) if record else None
        results: dict[int, RowResult] = {}
        policy.reset(s)
        body = Body(policy, meter, compiled)
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
            if body.auto and worth_compiling(c, rows.t_end, time.perf_counter() - start, iterations,
                                              max_steps - iterations):  # decided before any system leaves
                body.auto, body.pending = False, True
            can_drop = can_drop and not body.fixed_shape
            leaving = _leaving(c.remaining, max_error, rows.value, drop_above) if can_drop else None
            if leaving is not None:
                results.update(row_results(rows, c, max_error, policy, leaving))
                keep = (~leaving).nonzero().squeeze(1)
                rows, c = rows.take(keep), c.take(keep)
                policy.select(keep)
                body.meter = EnergyMeter(setup.gravity, c.s.mass, c.s.dims)
                if trace is not None:
                    trace.select(keep)
        wall = time.perf_counter() - start
        if trace is not None:
            trace.close_window(c.s, c.steps)
        results.update(row_results(rows, c, max_error, policy))
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
