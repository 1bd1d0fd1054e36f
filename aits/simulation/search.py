"""``--target-error``: the cheapest setting of a policy's free parameter whose max |dE/E0| over the
run stays within a target, found with candidates run side by side as one batch.

1. Pilot (skipped when a guess is given): the default times 2^k for k in [-20, 8]; the batch stops
   when a candidate arrives with an error within a loose threshold; the error's scaling with the
   parameter (measured against its neighbour, else the integrator's order) extrapolates from it to
   an estimate of the answer.
2. Fine rounds: ``grid`` candidates per factor 2 around the estimate, from 2^(-1/2) to 2^(1/4)
   times it. The batch stops when the first candidate arrives within the target: it is the
   cheapest, since every candidate still running needs more steps. Known failures leave the batch
   early (but the smallest-valued one, whose step count is reported). When all candidates fail (or
   the cheapest passing one is the largest tried), the next half octave below (above) is tried.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch

from aits.errors import UserError
from aits.simulation.engine import DEFAULT_MAX_STEPS, integrate
from aits.simulation.problem import PolicySpec, Setup
from aits.simulation.results import RowResult

PILOT_EXPONENTS = range(-20, 9)
PILOT_LOOSENESS = 16.0  # the pilot aims at candidates this many times coarser than the answer
MAX_ROUNDS = 8


class SearchFailed(UserError):
    """No setting of the parameter met the target (within the step cap)."""


@dataclass
class SearchResult:
    best: RowResult  # the cheapest passing setting found
    failing: RowResult | None  # the most expensive failing setting that is cheaper than ``best``
    trace: dict[str, torch.Tensor]  # of ``best``
    estimate: float  # the value the fine rounds were centred on
    rounds: int
    candidates: int
    wall_time_s: float


def cheapest_passing(rows: list[RowResult], target: float) -> RowResult | None:
    passing = [r for r in rows if r.passes(target)]
    return min(passing, key=lambda r: (r.steps, -r.value)) if passing else None


def next_cheaper_failing(rows: list[RowResult], target: float, best: RowResult) -> RowResult | None:
    failing = [r for r in rows if r.status != "stopped" and not r.passes(target) and r.steps < best.steps]
    return max(failing, key=lambda r: (r.steps, -r.value)) if failing else None


def pilot_estimate(setup: Setup, spec: PolicySpec, target: float, order: int, max_steps: int,
                   compiled: bool | None = None) -> float:
    """A first estimate of the parameter value that just meets ``target``."""
    values = spec.default * 2.0 ** torch.tensor(list(PILOT_EXPONENTS), dtype=torch.float64)
    loose = max(target, min(target * PILOT_LOOSENESS**order, 1e-2))
    out = integrate(setup.repeat(len(values)), spec, values, stop_below=loose, max_steps=max_steps, compiled=compiled)
    pick = cheapest_passing(out.rows, loose)
    if pick is None:
        raise SearchFailed(_no_setting(spec, target, float(values.min()), float(values.max()), out.hit_max_steps,
                                       max_steps))
    return pick.value * (target / max(pick.max_error, target * 1e-6)) ** (1.0 / _exponent(out.rows, pick, order))


def _exponent(rows: list[RowResult], pick: RowResult, order: int) -> float:
    """How max |dE/E0| scales with the parameter near ``pick``, measured against the next larger
    value that arrived (``order`` if it did not, or the slope is implausible): the parameter need
    not be proportional to dt (Aarseth's eta enters under a square root)."""
    above = [r for r in rows if r.status == "finished" and r.value > pick.value and r.max_error > pick.max_error]
    if not above or pick.max_error <= 0:
        return float(order)
    up = min(above, key=lambda r: r.value)
    slope = math.log(up.max_error / pick.max_error) / math.log(up.value / pick.value)
    return slope if 0.5 <= slope <= 2 * order else float(order)


def search(setup: Setup, spec: PolicySpec, target: float, *, order: int = 2, guess: float | None = None,
           max_steps: int = DEFAULT_MAX_STEPS, grid: int = 48, compiled: bool | None = None) -> SearchResult:
    """The cheapest setting of ``spec``'s parameter with max |dE/E0| <= ``target`` (see module doc);
    ``compiled`` as in :func:`~aits.simulation.engine.integrate`."""
    if not target > 0:
        raise UserError(f"--target-error must be > 0, got {target}")
    start = time.perf_counter()
    estimate = guess if guess is not None else pilot_estimate(setup, spec, target, order, max_steps, compiled)
    ratio = 2.0 ** (1.0 / grid)
    values = estimate * ratio ** torch.arange(-(grid // 2), grid // 4 + 1, dtype=torch.float64)
    tried: list[RowResult] = []
    best, trace = None, None
    for rounds in range(1, MAX_ROUNDS + 1):
        out = integrate(setup.repeat(len(values)), spec, values, stop_below=target, drop_above=target,
                        max_steps=max_steps, record=True, compiled=compiled)
        tried += out.rows
        found = cheapest_passing(out.rows, target)
        if found is not None and (best is None or (found.steps, -found.value) < (best.steps, -best.value)):
            best, trace = found, out.trace.row(next(i for i, r in enumerate(out.rows) if r is found))
        if best is None:
            if out.hit_max_steps:
                raise SearchFailed(_no_setting(spec, target, min(r.value for r in tried), max(r.value for r in tried),
                                            True, max_steps))
            values = _below(tried, target, order, ratio, grid)
        elif best.value >= max(r.value for r in tried):
            values = best.value * ratio ** torch.arange(1, grid // 2 + 1, dtype=torch.float64)
        else:
            break
    else:
        raise SearchFailed(f"policy {spec.name}: --target-error search did not settle in {MAX_ROUNDS} rounds")
    return SearchResult(best, next_cheaper_failing(tried, target, best), trace, estimate, rounds,
                        len(tried), time.perf_counter() - start)


def _below(tried: list[RowResult], target: float, order: int, ratio: float, grid: int) -> torch.Tensor:
    """The next candidates below every value tried (all failed): at least half an octave, down to
    where the smallest one's error extrapolates to the target, at most two octaves."""
    smallest = min(tried, key=lambda r: r.value)
    lowest = smallest.value * 2**-0.5
    if smallest.status == "finished" and smallest.max_error > target:
        lowest = min(lowest, smallest.value * (target / smallest.max_error) ** (1.0 / order) * 2**-0.25)
    count = min(math.ceil(math.log(smallest.value / lowest) / math.log(ratio)), 2 * grid)
    return smallest.value * ratio ** -torch.arange(1, count + 1, dtype=torch.float64)


def _no_setting(spec: PolicySpec, target: float, lo: float, hi: float, capped: bool, max_steps: int) -> str:
    why = f" within {max_steps} steps (raise --max-steps)" if capped else ""
    return f"policy {spec.name}: no {spec.parameter} in [{lo:.3g}, {hi:.3g}] keeps max |dE/E0| <= {target:g}{why}"
