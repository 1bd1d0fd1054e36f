"""Where a run's processes meet: every sum that must cover all of them goes through a strategy.

The training loops and executors call these at the points where a data-parallel run must agree:
the loss weights' denominators and the accept / done / pass counts (:meth:`Strategy.all_reduce`),
the decisions that end a loop (:meth:`Strategy.reduce_boolean_decision`), the gradient before an
update, the rows a metric or a checkpoint needs from every process (:meth:`Strategy.gather_rows`),
which share of a population each process steps (:meth:`Strategy.shard`), and who writes files
(:attr:`Strategy.is_global_zero`). In one process all of them are the identity, so single-process
training is exactly what it would be without them. Several processes:
:class:`aits.training.distributed.Distributed`.
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

    def all_gather(self, tensor: torch.Tensor) -> torch.Tensor:
        """Every process's ``tensor`` (the same shape on each), stacked in rank order: (K, *shape)."""

    def gather_rows(self, tensor: torch.Tensor) -> torch.Tensor:
        """Every process's rows of ``tensor`` (any number of rows each), concatenated in rank order."""

    def broadcast_object(self, obj: object) -> object:
        """Rank 0's ``obj`` (picklable), on every process."""

    def place(self, device: torch.device) -> torch.device:
        """The device this process trains on, given the run's device."""

    def shard(self, total: int) -> slice:
        """This process's rows of ``total`` rows split into K contiguous shares in rank order."""


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

    def all_gather(self, tensor: torch.Tensor) -> torch.Tensor:
        return tensor[None]

    def gather_rows(self, tensor: torch.Tensor) -> torch.Tensor:
        return tensor

    def broadcast_object(self, obj: object) -> object:
        return obj

    def place(self, device: torch.device) -> torch.device:
        return device

    def shard(self, total: int) -> slice:
        return share(total, 0, 1)


def share(total: int, rank: int, world_size: int) -> slice:
    """Rank ``rank``'s contiguous share of ``total`` rows split as evenly as possible over ``world_size``."""
    return slice(rank * total // world_size, (rank + 1) * total // world_size)
