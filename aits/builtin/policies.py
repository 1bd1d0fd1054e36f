"""Built-in dt policies for ``aits simulate``: ``fixed``, ``freefall``, ``freefall_symmetric``,
``aarseth`` and ``learned``.

Each policy has one free parameter (``dt``, ``eta`` or ``scale``) given per system as a tensor
(B,), so that many settings of it run side by side as one batch.
"""

from __future__ import annotations

from pathlib import Path

import torch

from aits.errors import UserError
from aits.hookspecs import hookimpl
from aits.interfaces import DtPolicy, Integrator, push_history
from aits.physics import Gravity, Systems
from aits.physics.derivatives import aarseth_time
from aits.physics.pairs import Pairs
from aits.registry import Registrar


class BuiltinPolicy(DtPolicy):
    """Base of the built-in policies: checks the parameter; all are ``compilable`` and
    ``selectable``."""

    compilable = True
    selectable = True

    def __init__(self, value: torch.Tensor, gravity: Gravity, integrator: Integrator) -> None:
        super().__init__(value, gravity, integrator)
        if not bool(torch.isfinite(value).all() & (value > 0).all()):
            raise UserError(f"policy {self.name}: {self.parameter} must be finite and > 0")

    def select(self, rows: torch.Tensor) -> None:
        self.value = self.value[rows]


class FixedDt(BuiltinPolicy):
    """Constant step: dt (time units)."""

    name = "fixed"
    parameter = "dt"
    default = 1e-3

    def dt(self, s: Systems) -> torch.Tensor:
        return self.value


class _PairTimes(BuiltinPolicy):
    """Shared by the free-fall rules: pair tables for the masses, built on reset (or first use)."""

    pairs: Pairs | None = None

    def reset(self, s: Systems) -> None:
        self.pairs = Pairs(s.mass, self.gravity)

    def select(self, rows: torch.Tensor) -> None:
        super().select(rows)
        self.pairs = None

    def tau(self, s: Systems, pos: torch.Tensor) -> torch.Tensor:
        if self.pairs is None or self.pairs.gm_sum.shape[0] != s.batch:
            self.reset(s)
        return self.pairs.freefall_time(pos)


class FreeFall(_PairTimes):
    """Free-fall rule: dt = eta * min over pairs sqrt(r_ij^3 / G (m_i + m_j)) (softened r)."""

    name = "freefall"
    parameter = "eta"
    default = 0.01

    def dt(self, s: Systems) -> torch.Tensor:
        return self.value * self.tau(s, s.pos)


class SymmetricFreeFall(_PairTimes):
    """Time-symmetric free-fall rule: dt = eta (tau(x_n) + tau(x_n+1)) / 2, by fixed-point iteration.

    ``iterations`` fixed-point iterations start from dt = eta tau(x_n). ``predictor`` finds x_n+1 for
    a trial dt: ``drift`` by the integrator's :meth:`~aits.interfaces.Integrator.end_positions`,
    which needs an integrator with ``free_end_positions`` (for kick-drift-kick leapfrog,
    x + dt v + dt^2 a / 2); ``step`` by a full trial step per iteration (its force evaluations
    counted); ``auto`` picks ``drift`` where the integrator allows it.
    """

    name = "freefall_symmetric"
    parameter = "eta"
    default = 0.01

    def __init__(self, value: torch.Tensor, gravity: Gravity, integrator: Integrator, iterations: int = 2,
                 predictor: str = "auto") -> None:
        super().__init__(value, gravity, integrator)
        if not isinstance(iterations, int) or iterations < 1:
            raise UserError(f"policy {self.name}: iterations must be an integer >= 1, got {iterations!r}")
        if predictor not in ("auto", "drift", "step"):
            raise UserError(f"policy {self.name}: predictor must be auto, drift or step, got {predictor!r}")
        if predictor == "drift" and not integrator.free_end_positions:
            raise UserError(f"policy {self.name}: predictor drift needs an integrator with free end positions; "
                            f"{integrator.name} has none (use auto or step)")
        self.iterations = iterations
        self.drift = predictor != "step" and integrator.free_end_positions

    def _next_positions(self, s: Systems, dt: torch.Tensor) -> torch.Tensor:
        if self.drift:
            return self.integrator.end_positions(s, dt, self.gravity)
        return self.integrator.step(s, dt, self.gravity).pos

    def dt(self, s: Systems) -> torch.Tensor:
        tau0 = self.tau(s, s.pos)
        dt = self.value * tau0
        for _ in range(self.iterations):
            dt = 0.5 * self.value * (tau0 + self.tau(s, self._next_positions(s, dt)))
        return dt

    @property
    def force_evaluations_per_step(self) -> float:
        trials = 0 if self.drift else self.iterations
        return float(self.integrator.force_evaluations * (1 + trials))


class Aarseth(BuiltinPolicy):
    """Aarseth's criterion: dt = min over bodies sqrt(eta (|a||a2| + |a1|^2) / (|a1||a3| + |a2|^2))."""

    name = "aarseth"
    parameter = "eta"
    default = 1e-3

    def dt(self, s: Systems) -> torch.Tensor:
        return self.value.sqrt() * aarseth_time(s.pos, s.vel, s.mass, self.gravity)


class Learned(BuiltinPolicy):
    """The trained network's dt (a checkpoint from aits train), times a global scale.

    The scale multiplies the network's output only: the network's history window (when its feature
    adapter has one) records its own unscaled predictions, zero-padded at the start of a run.

    ``symmetric``: dt = scale (P(z_n) + P(z_n+1)) / 2, P the network's dt at a state z, solved by
    ``iterations`` fixed-point iterations from dt = scale P(z_n), each with a trial step to find
    z_n+1 (its force evaluations counted). The network's features are even in the velocities, so
    the rule picks the same dt forward and backward in time (to the convergence of the iteration):
    leapfrog with it is time-reversible, and its energy error does not drift over long runs.
    Needs a policy without history.
    """

    name = "learned"
    parameter = "scale"
    default = 1.0

    def __init__(self, value: torch.Tensor, gravity: Gravity, integrator: Integrator,
                 checkpoint: str | Path | None = None, model: torch.nn.Module | None = None,
                 symmetric: bool = False, iterations: int = 2) -> None:
        super().__init__(value, gravity, integrator)
        if model is None:
            if checkpoint is None:
                raise UserError("the learned policy needs a checkpoint (--checkpoint model.pt)")
            from aits.training.state import load_policy

            model = load_policy(Path(checkpoint), gravity)
        if not isinstance(symmetric, bool):
            raise UserError(f"policy {self.name}: symmetric must be true or false, got {symmetric!r}")
        if not isinstance(iterations, int) or isinstance(iterations, bool) or iterations < 1:
            raise UserError(f"policy {self.name}: iterations must be an integer >= 1, got {iterations!r}")
        self.model = model.to(device=value.device, dtype=value.dtype).eval()
        self.adapter = self.model.adapter
        if symmetric and self.adapter.history_len:
            raise UserError(f"policy {self.name}: symmetric needs a policy without history "
                            f"(this one reads its last {self.adapter.history_len} steps)")
        self.symmetric, self.iterations = symmetric, iterations
        self.history = torch.empty(0)
        self.prediction = torch.empty(0)

    def reset(self, s: Systems) -> None:
        self.history = self.adapter.empty_history(s)

    def select(self, rows: torch.Tensor) -> None:
        super().select(rows)
        self.history = self.history[rows]

    def dt(self, s: Systems) -> torch.Tensor:
        self.prediction, _ = self.model(s, self.history)
        if self.symmetric:
            start = self.prediction
            for _ in range(self.iterations):
                end, _ = self.model(self.integrator.step(s, self.prediction * self.value, self.gravity), self.history)
                self.prediction = 0.5 * (start + end)
        return self.prediction * self.value

    def step(self, s: Systems, dt: torch.Tensor) -> Systems:
        new = self.integrator.step(s, dt, self.gravity)
        if self.adapter.history_len:
            self.history = push_history(self.history, self.adapter.memory(s, self.prediction))
        return new

    @property
    def force_evaluations_per_step(self) -> float:
        trials = self.iterations if self.symmetric else 0
        return float(self.integrator.force_evaluations * (1 + trials))


@hookimpl
def aits_register(registrar: Registrar) -> None:
    for policy in (FixedDt, FreeFall, SymmetricFreeFall, Aarseth, Learned):
        registrar.policy(policy)
