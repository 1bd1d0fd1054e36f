"""Where a run's processes meet: every sum that must cover all of them goes through a strategy.

The training loops and executors call these at the points where a data-parallel run must agree:
the loss weights' denominators and the accept / done / pass counts (:meth:`Strategy.all_reduce`),
the decisions that end a loop (:meth:`Strategy.reduce_boolean_decision`), the gradient before an
update, and who writes files (:attr:`Strategy.is_global_zero`). In one process all of them are the
identity, so single-process training is exactly what it would be without them.
"""

from __future__ import annotations

from typing import Protocol

import torch


class Strategy(Protocol):
    rank: int
    world_size: int

    @property
    def is_global_zero(self) -> bool: ...

    def all_reduce(self, tensor: torch.Tensor) -> torch.Tensor:
        """The sum of ``tensor`` over all processes (in place where it can; the result is returned)."""

    def reduce_boolean_decision(self, decision: bool, all: bool = True) -> bool:
        """True when every process (``all``) or some process (``all=False``) decided True."""


class SingleProcess:
    """One process: every reduction is the identity."""

    rank = 0
    world_size = 1

    @property
    def is_global_zero(self) -> bool:
        return True

    def all_reduce(self, tensor: torch.Tensor) -> torch.Tensor:
        return tensor

    def reduce_boolean_decision(self, decision: bool, all: bool = True) -> bool:
        return decision
