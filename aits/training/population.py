"""A population of training systems: its live batch, their history windows and its replay buffer."""

from __future__ import annotations

import torch

from aits.errors import UserError
from aits.interfaces import FeatureAdapter, push_history
from aits.physics import Gravity, Systems
from aits.training.buffer import ReplayBuffer
from aits.training.executors import Batch, live_states
from aits.training.step import StepResult
from aits.training.strategy import SingleProcess, Strategy


class Population:
    """Systems of one kind (one generator and its parameters), all with the same number of bodies.

    Part 1 advances the live systems and records their accepted steps in the population's own
    replay buffer; Part 2 draws its share of every minibatch from that buffer.

    With several processes each steps its own contiguous share of the ``total`` systems and holds
    the samples it recorded; states and buffers are gathered from every process for a checkpoint."""

    def __init__(self, name: str, systems: Systems, gravity: Gravity, adapter: FeatureAdapter,
                 replay_capacity: int, strategy: Strategy | None = None, index: int = 0) -> None:
        self.name, self.index = name, index
        self.strategy = strategy or SingleProcess()
        self.total = systems.batch
        if self.total < self.strategy.world_size:
            raise UserError(f"population {name!r} has {self.total} systems, fewer than the "
                            f"{self.strategy.world_size} processes of this run; use fewer processes")
        systems = systems.index(self.strategy.shard(self.total))
        self.systems = systems
        self.energy = gravity.energy(systems)
        self.history = adapter.empty_history(systems)
        self.accepted_steps = torch.zeros(systems.batch, dtype=torch.int64, device=systems.pos.device)
        self.buffer = ReplayBuffer(replay_capacity, systems.bodies, systems.dims, adapter.history_len,
                                   adapter.memory_dim, systems.pos.dtype, systems.pos.device, self.strategy.world_size,
                                   featurize=adapter.features_and_timescale, feature_dim=adapter.dim)

    @property
    def batch(self) -> int:
        """The systems this process steps (:attr:`total` over all processes)."""
        return self.systems.batch

    @property
    def bodies(self) -> int:
        return self.systems.bodies

    def live(self, active: torch.Tensor) -> Batch:
        """The live systems as a batch whose ``active`` (B,) rows count."""
        return Batch(live_states, (*self.systems.tensors(), self.energy, self.history), active, self.bodies, self.index)

    def replay(self, idx: torch.Tensor, distinct: int) -> Batch:
        """Of replay slots ``idx``, those this process holds, as a batch whose rows among the first
        ``distinct`` of ``idx`` count."""
        rows = torch.arange(idx.numel(), device=idx.device) < distinct
        mine = self.buffer.owned[idx]
        return Batch(self.buffer.gather, (idx[mine],), rows[mine], self.bodies, self.index)

    def accept(self, ok: torch.Tensor, r: StepResult, adapter: FeatureAdapter) -> int:
        """Advance the systems in ``ok`` (B,); record their pre-step samples unless still warming up.
        Returns how many were recorded (by every process)."""
        keep = ok & (self.accepted_steps >= adapter.history_len)  # the first history_len steps are warm-up
        counts = self.strategy.all_gather(keep.sum()).tolist()
        offset, total = sum(counts[: self.strategy.rank]), sum(counts)
        self.buffer.add(self.systems.index(keep), self.energy[keep], self.history[keep], r.dt[keep], offset, total)
        if adapter.history_len:
            pushed = push_history(self.history, adapter.memory(self.systems, r.dt))
            self.history = torch.where(ok[:, None, None], pushed, self.history)
        self.systems = r.new.where(ok, self.systems)
        self.energy = torch.where(ok, r.energy, self.energy)
        self.accepted_steps += ok.long()
        return total

    def buffer_state(self) -> dict:
        """The replay buffer with the samples of every process (each slot is held by one of them)."""
        state = self.buffer.state_dict()
        for name in self.buffer.fields:
            self.strategy.all_reduce(state[name])
        return state

    def load_buffer(self, state: dict) -> None:
        """Load a replay buffer of :meth:`buffer_state`; the processes share its samples."""
        self.buffer.load_state_dict(state, self.strategy.rank, self.strategy.world_size)

    def state_dict(self) -> dict:
        """The live systems of every process, in order."""
        s = self.systems
        return {name: self.strategy.gather_rows(t).cpu() for name, t in (
            ("pos", s.pos), ("vel", s.vel), ("mass", s.mass), ("acc", s.acc), ("time", s.time),
            ("energy", self.energy), ("history", self.history), ("accepted_steps", self.accepted_steps))}

    def load_state_dict(self, state: dict) -> None:
        """This process's share of the live systems of :meth:`state_dict` (the buffer is saved and
        loaded on its own)."""
        device = self.systems.pos.device
        sys = {k: v[self.strategy.shard(v.shape[0])].to(device) for k, v in state.items()}
        self.systems = Systems(sys["pos"], sys["vel"], sys["mass"], sys["acc"], sys["time"])
        self.energy, self.history, self.accepted_steps = sys["energy"], sys["history"], sys["accepted_steps"]


def split(total: int, sizes: list[int]) -> list[int]:
    """``total`` shared among populations of ``sizes`` systems in proportion to the sizes (largest
    remainders), at least one each (``total`` >= the number of populations); the shares sum to ``total``."""
    whole = sum(sizes)
    shares = [total * size // whole for size in sizes]
    by_remainder = sorted(range(len(sizes)), key=lambda i: -(total * sizes[i] % whole))
    for i in by_remainder[: total - sum(shares)]:
        shares[i] += 1
    for i, share in enumerate(shares):
        if share == 0:
            shares[shares.index(max(shares))] -= 1
            shares[i] = 1
    return shares
