"""The loop body of a batched run, eager or compiled: for long runs ``CHUNK`` steps per call of
one torch.compile graph. On small systems the eager loop's cost is almost all per-operation
overhead, which compilation removes."""

from __future__ import annotations

import functools
import math
import time
from typing import Callable

import torch

from aits.interfaces import DtPolicy
from aits.physics import Systems
from aits.physics.pairs import EnergyMeter
from aits.runtime import warn_compile_failed
from aits.simulation.stepper import Carry, advance

CHUNK = 8  # steps per call of the compiled loop body (more: faster steps, but longer to compile)
# Automatic compilation: compiling costs ~5 s (inductor's on-disk cache warm) to over a minute
# (cold, busy machine) and then runs 5-30x faster, so it pays only once the rest of a run would
# take longer than this, eagerly.
COMPILE_PAYS_S = 30.0


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


class Body:
    """The loop body: one eager step per call or, once compiled, ``CHUNK`` steps per call.

    ``pending``: compile at the next chunk; ``auto``: integrate may still decide to. If compiling
    fails, a one-line warning, and the steps stay eager."""

    def __init__(self, policy: DtPolicy, meter: EnergyMeter, compiled: bool | None) -> None:
        self.policy, self.meter = policy, meter
        compilable = compiled is not False and policy.compilable
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


def worth_compiling(c: Carry, t_end: torch.Tensor, seconds: float, iterations: int, steps_left: int) -> bool:
    """Whether the rest of the run, at its eager pace so far, would take more than ``COMPILE_PAYS_S``.
    The rest lasts at least until the first running system arrives: its steps so far times its
    time left over its time done."""
    done = t_end - c.remaining
    arrival = torch.where((c.remaining > 0) & (done > 0), c.steps * (c.remaining / done), math.inf).amin()
    return min(float(arrival), steps_left) * seconds / iterations > COMPILE_PAYS_S

