"""The small typed interfaces that plugin objects implement.

What an object can do is declared on its class, not probed: an integrator's ``order`` and
``force_evaluations`` (and whether its ``end_positions`` are free), a policy's ``compilable`` and
``selectable``. Registration checks the declarations (:class:`aits.registry.Registrar`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import torch

from aits.physics import Gravity, Systems

if TYPE_CHECKING:
    from aits.config import TrainingConfig


class Integrator(ABC):
    """Advances every system of a batch by its own step ``dt`` (B,).

    ``order``: the order of its global error (``aits simulate`` reports accuracy scaling with it);
    ``force_evaluations``: per step, given the acceleration carried in the state.
    ``free_end_positions``: :meth:`end_positions` costs no force evaluation, so a time-symmetric
    step-size rule can iterate on the end of a step cheaply.
    ``cuts_nonfinite_rows``: the gradient of :meth:`step_with_energy` is exactly zero on every row
    whose step is not finite (positions, velocities or energy) when no state tensor needs a gradient,
    so that a compiled training step takes it once instead of again with those rows cut from the graph.
    """

    name: ClassVar[str]
    order: ClassVar[int]
    force_evaluations: ClassVar[int]
    free_end_positions: ClassVar[bool] = False
    cuts_nonfinite_rows: ClassVar[bool] = False

    @abstractmethod
    def step(self, s: Systems, dt: torch.Tensor, gravity: Gravity) -> Systems: ...

    def end_positions(self, s: Systems, dt: torch.Tensor, gravity: Gravity) -> torch.Tensor:
        """The positions after a step of ``dt``: by default the step's own (its force evaluations);
        integrators that have them from the start state alone override this and declare
        ``free_end_positions``."""
        return self.step(s, dt, gravity).pos

    def step_with_energy(self, s: Systems, dt: torch.Tensor, gravity: Gravity) -> tuple[Systems, torch.Tensor]:
        """The step and the total energy (B,) after it, differentiable with respect to ``dt`` (training
        backpropagates the energy error into the policy through it). By autograd through ``step``;
        integrators with a closed-form derivative override it (cheaper: no pair tensor kept)."""
        new = self.step(s, dt, gravity)
        return new, gravity.energy(new)


class FeatureAdapter(ABC):
    """Turns a state (and a window of remembered past steps) into the policy's input.

    ``memory(state, dt)`` is what the adapter keeps of each accepted step; ``features`` reads the
    current state and the last ``history_len`` memories (B, history_len, memory_dim), oldest first,
    zero-padded where the run is younger than the window.

    Features must be a function of the state and the window only (no state of their own, no
    randomness): the replay buffer computes a sample's features once, when it stores it, and Part 2
    trains on those.
    """

    name: ClassVar[str]
    dim: int
    history_len: int = 0
    memory_dim: int = 0

    def __init__(self, gravity: Gravity, history_len: int = 0) -> None:
        self.gravity = gravity

    @abstractmethod
    def features(self, s: Systems, history: torch.Tensor) -> torch.Tensor: ...

    def features_and_timescale(self, s: Systems, history: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Features and the natural time scale (B,) that the policy's output is relative to: the
        shortest pairwise free-fall time. Adapters that compute it anyway override this."""
        return self.features(s, history), self.gravity.freefall_time(s.pos, s.mass)

    def memory(self, s: Systems, dt: torch.Tensor) -> torch.Tensor:
        return s.pos.new_zeros(s.batch, self.memory_dim)

    def empty_history(self, s: Systems) -> torch.Tensor:
        """The zero-padded history of a run that has just started."""
        return s.pos.new_zeros(s.batch, self.history_len, self.memory_dim)


def push_history(history: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
    """Drop the oldest entry of each window (B, H, M) and append ``memory`` (B, M)."""
    if history.shape[1] == 0:
        return history
    return torch.cat([history[:, 1:], memory[:, None]], 1)


class InitialConditions(Protocol):
    """An initial-condition generator: ``count`` systems as (pos, vel, mass) tensors; ``params`` are
    its own keyword options (``system.params`` in the config). Registered under its ``__name__``."""

    __name__: str

    def __call__(self, *, G: float, rng: torch.Generator, **params: Any) -> tuple[torch.Tensor, ...]: ...


class Loss(ABC):
    """Per-sample training loss from the relative energy error of a step (all finite, > 0)."""

    name: ClassVar[str]

    @abstractmethod
    def __call__(self, rel_dE: torch.Tensor, config: TrainingConfig) -> torch.Tensor: ...


class DtPolicy(ABC):
    """Chooses the step of each system during ``aits simulate``.

    ``parameter`` names the one free knob (``dt``, ``eta``, ``scale``) that ``--target-error``
    searches; its value is passed to the constructor as ``value`` (a tensor (B,) so that many
    settings can run side by side as one batch).

    ``compilable``: ``dt`` and ``step`` are plain tensor code that torch.compile can trace (state
    kept in tensor attributes), so that long runs may compile the loop; False: always eager.
    ``selectable``: :meth:`select` can drop systems from the batch, so that the simulation stops
    integrating those it no longer needs (a policy with per-system state selects that too).
    """

    name: ClassVar[str]
    parameter: ClassVar[str]
    default: ClassVar[float]
    compilable: ClassVar[bool] = False
    selectable: ClassVar[bool] = False

    def __init__(self, value: torch.Tensor, gravity: Gravity, integrator: Integrator, **options: object) -> None:
        self.value = value
        self.gravity = gravity
        self.integrator = integrator

    def reset(self, s: Systems) -> None:
        """Called once with the initial state."""

    def select(self, rows: torch.Tensor) -> None:
        """Keep only the systems ``rows`` (positions in the current batch); ``selectable`` policies."""
        raise NotImplementedError(f"policy {self.name} is not selectable")

    @abstractmethod
    def dt(self, s: Systems) -> torch.Tensor: ...

    def step(self, s: Systems, dt: torch.Tensor) -> Systems:
        """Take one step; policies with memory (history) update it here."""
        return self.integrator.step(s, dt, self.gravity)

    @property
    def force_evaluations_per_step(self) -> float:
        return float(self.integrator.force_evaluations)


class MetricSink(ABC):
    """Receives a training run's metrics: the resolved config at the start, each epoch's metrics
    (a nested dict, as in metrics.jsonl) and the run's summary when it completes.

    Constructed once per run (per process) with the run directory; ``close`` is always called,
    also when the run stops early (then without ``finish``). ``first_epoch`` > 1 means a resumed
    run: a sink that keeps history should drop what it holds from that epoch on, which is redone.
    """

    name: ClassVar[str]

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir

    @classmethod
    def check(cls) -> None:
        """Raise :class:`aits.errors.UserError` when the sink cannot work here (a missing package)."""

    def start(self, config: dict[str, Any], first_epoch: int) -> None:
        """Called once before the first epoch of this process with the resolved config."""

    @abstractmethod
    def epoch(self, metrics: dict[str, Any]) -> None: ...

    def finish(self, summary: dict[str, Any]) -> None:
        """Called once when the run has completed every epoch it was asked for."""

    def close(self) -> None:
        """Release files and connections."""


@dataclass(frozen=True)
class ReferenceResult:
    """What a reference integrator did on a problem: its own setting, steps, force evaluations,
    max and final |dE/E0| (aits's energy, checked every step) and wall time."""

    setting: str
    steps: int
    force_evaluations: int
    max_error: float
    final_error: float
    wall_time_s: float
    end_time: float


class Reference(ABC):
    """An integrator outside aits that ``aits simulate --reference NAME`` runs on the same system
    (batch of one) to the same end time, for comparison: e.g. REBOUND's IAS15 (plugins/aits-rebound)."""

    name: ClassVar[str]

    @abstractmethod
    def run(self, s: Systems, t_end: float, gravity: Gravity) -> ReferenceResult: ...
