"""The batched state of a set of independent N-body systems."""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch


@dataclass(frozen=True)
class Systems:
    """B independent systems of N bodies in D dimensions.

    ``pos``/``vel``/``acc`` have shape (B, N, D), ``mass`` (B, N), ``time`` (B,).
    ``acc`` is the acceleration at ``pos``; integrators carry it from one step to the next so
    that kick-drift-kick needs one force evaluation per step.
    """

    pos: torch.Tensor
    vel: torch.Tensor
    mass: torch.Tensor
    acc: torch.Tensor
    time: torch.Tensor

    @property
    def batch(self) -> int:
        return self.pos.shape[0]

    @property
    def bodies(self) -> int:
        return self.pos.shape[1]

    @property
    def dims(self) -> int:
        return self.pos.shape[2]

    def index(self, idx: torch.Tensor | slice) -> Systems:
        """The sub-batch selected by ``idx`` along the batch dimension."""
        return Systems(self.pos[idx], self.vel[idx], self.mass[idx], self.acc[idx], self.time[idx])

    def where(self, mask: torch.Tensor, other: Systems) -> Systems:
        """Per system: ``self`` where ``mask`` (B,) is true, else ``other``."""
        m3 = mask[:, None, None]
        return Systems(
            torch.where(m3, self.pos, other.pos),
            torch.where(m3, self.vel, other.vel),
            torch.where(mask[:, None], self.mass, other.mass),
            torch.where(m3, self.acc, other.acc),
            torch.where(mask, self.time, other.time),
        )

    def detach(self) -> Systems:
        return Systems(*(t.detach() for t in self.tensors()))

    def tensors(self) -> tuple[torch.Tensor, ...]:
        return (self.pos, self.vel, self.mass, self.acc, self.time)

    def with_(self, **changes: torch.Tensor) -> Systems:
        return replace(self, **changes)
