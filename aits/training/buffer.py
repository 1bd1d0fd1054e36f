"""A fixed-capacity replay buffer of accepted steps (pre-step state, its history window, dt)."""

from __future__ import annotations

import torch

from aits.physics import Systems

FIELDS = ("pos", "vel", "mass", "acc", "energy", "history", "dt")


class ReplayBuffer:
    """Ring buffer: once ``capacity`` samples are held, each new one replaces the oldest."""

    def __init__(self, capacity: int, bodies: int, dims: int, history_len: int, memory_dim: int,
                 dtype: torch.dtype, device: torch.device) -> None:
        self.capacity = capacity
        kw = {"dtype": dtype, "device": device}
        self.data = {
            "pos": torch.zeros(capacity, bodies, dims, **kw),
            "vel": torch.zeros(capacity, bodies, dims, **kw),
            "mass": torch.zeros(capacity, bodies, **kw),
            "acc": torch.zeros(capacity, bodies, dims, **kw),
            "energy": torch.zeros(capacity, **kw),
            "history": torch.zeros(capacity, history_len, memory_dim, **kw),
            "dt": torch.zeros(capacity, **kw),
        }
        self.owned = torch.zeros(capacity, dtype=torch.bool, device=device)  # slots whose sample this process holds
        self.size = 0
        self.cursor = 0  # where the next sample goes

    def add(self, s: Systems, energy: torch.Tensor, history: torch.Tensor, dt: torch.Tensor, offset: int = 0,
            total: int | None = None) -> None:
        """Store a batch of samples (detached), overwriting the oldest when full.

        With several processes the ``s.batch`` samples are rows ``offset`` on of ``total`` samples
        that all processes add together (in rank order): every process advances the ring by ``total``
        and holds only its own rows (:attr:`owned`)."""
        k = s.batch
        total = k if total is None else total
        if total == 0:
            return
        device = self.owned.device
        positions = offset + torch.arange(k, device=device)  # in the sequence of all processes' samples
        slots = (self.cursor + positions) % self.capacity
        values = {"pos": s.pos, "vel": s.vel, "mass": s.mass, "acc": s.acc, "energy": energy, "history": history, "dt": dt}
        if total > self.capacity:  # only the newest `capacity` of them survive
            survive = positions >= total - self.capacity
            slots, values = slots[survive], {n: v[survive] for n, v in values.items()}
        new = self.cursor + torch.arange(max(0, total - self.capacity), total, device=device)
        self.owned[new % self.capacity] = False
        self.owned[slots] = True
        for name, value in values.items():
            self.data[name][slots] = value.detach()
        self.cursor = (self.cursor + total) % self.capacity
        self.size = min(self.size + total, self.capacity)

    def indices(self, count: int, generator: torch.Generator, pad: bool = False) -> torch.Tensor:
        """Slots of ``min(count, size)`` distinct random samples.

        With ``pad``, always ``count`` slots: when the buffer holds fewer, the distinct samples come
        first and repeat to fill the rest (fixed shapes for a compiled step)."""
        idx = torch.randperm(self.size, generator=generator)[:count]
        if pad and 0 < idx.numel() < count:
            idx = idx.repeat(-(-count // idx.numel()))[:count]
        return idx.to(self.data["pos"].device)

    def gather(self, idx: torch.Tensor) -> tuple[Systems, torch.Tensor, torch.Tensor]:
        """The samples in slots ``idx``: (states, their energies, their history windows)."""
        d = {name: self.data[name][idx] for name in ("pos", "vel", "mass", "acc", "energy", "history")}
        s = Systems(d["pos"], d["vel"], d["mass"], d["acc"], torch.zeros_like(d["energy"]))
        return s, d["energy"], d["history"]

    def state_dict(self) -> dict:
        """The samples: copies of the first ``size`` rows (a slice would be saved with the whole
        capacity it views), zero in the rows that another process holds."""
        state = {"capacity": self.capacity, "size": self.size, "cursor": self.cursor,
                 **{name: t[: self.size].to("cpu", copy=True) for name, t in self.data.items()}}
        elsewhere = ~self.owned[: self.size].cpu()
        if elsewhere.any():
            for name in FIELDS:
                state[name][elsewhere] = 0
        return state

    def load_state_dict(self, state: dict, rank: int = 0, world_size: int = 1) -> None:
        """Load every sample of ``state``; this process holds (and evaluates) the slots ``rank`` mod
        ``world_size``."""
        self.size, self.cursor = int(state["size"]), int(state["cursor"])
        for name in FIELDS:
            self.data[name][: state[name].shape[0]] = state[name].to(self.data[name])
        slots = torch.arange(self.capacity, device=self.owned.device)
        self.owned = (slots < self.size) & (slots % world_size == rank)
