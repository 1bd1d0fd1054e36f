"""What a simulation integrates: the systems with their end times, and the policy to step them."""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any

import torch

from aits.errors import UserError
from aits.interfaces import DtPolicy, Integrator
from aits.physics import Gravity, Systems


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
